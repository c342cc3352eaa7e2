"""Writing files safely and readably: atomic writes (``atomic_write``) and aligned text
tables (``text_table``)."""
