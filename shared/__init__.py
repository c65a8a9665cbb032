"""The thin layer every paper may import; nothing in it belongs to one paper."""
