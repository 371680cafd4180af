"""Stockade: an order and flash-sale checkout service that never oversells."""
