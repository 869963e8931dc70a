"""Training loops, losses and discriminators shared by the in-repo codecs."""
