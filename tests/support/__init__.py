"""Helpers shared by test modules (not tests themselves): rows, projects, Argilla accounts, reference recipes."""
