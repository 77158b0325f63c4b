"""DRESS monitor core: models, storage, catalogue, importers, steroid analysis, rules, scores.

No Streamlit import anywhere in this package (PRODUCT.md §2).
"""

__version__ = "0.1.0"
