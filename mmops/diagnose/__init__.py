"""Why it broke: the signature table, the log reader, the scan and the ranking of causes."""
