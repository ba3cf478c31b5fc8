"""Developer-experience checks of the bootstrap gate G7: pre-commit hooks (X4) and the import graph (X5)."""
