"""Helpers shared by several test modules: data files in real formats, studies, configs, file trees.

Test modules import from here, never from one another: a test module imported by another one
would be collected under two module names and its fixtures and constants loaded twice.
"""
