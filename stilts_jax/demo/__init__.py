"""The offline demo: a tiny random XLM-R and small datasets in the real formats, made from the shipped text."""
