"""The data market: products, ODRL offers, catalog, DSP negotiation, agreements, settlement."""
