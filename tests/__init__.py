"""The tests, laid out by the package room they check (project/: the repository as a whole)."""
