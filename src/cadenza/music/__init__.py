"""Music on top of the model: rendering now; compose / continue / predict / harmonize to come."""
