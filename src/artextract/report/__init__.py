"""HTML reports and the end-to-end demo."""
