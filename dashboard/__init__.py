"""DRESS monitor dashboard (Streamlit): pages, figure builders and widgets. No clinical logic here:
everything clinical is asked of the ``monitoring`` package."""
