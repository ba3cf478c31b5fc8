"""Test suite of guardian."""
