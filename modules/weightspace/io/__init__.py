"""Reading and writing safely: atomic files and folders, what an output may replace and its lock, the
restricted unpickler of untrusted files, downloads with checksums, and the data folder a caller names
(never the current directory).

Every other room writes through here, so that no reader ever sees half a file.
"""
