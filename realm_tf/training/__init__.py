"""Distribution strategies, optimizer, and the custom training loop shared by every trainer."""
