"""Getting files to and from the places jobs run: fetch, unpack, upload."""
