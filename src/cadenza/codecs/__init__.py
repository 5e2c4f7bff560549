"""Codecs: turn corpus files into token ids and back, one modality per module."""
