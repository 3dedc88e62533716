"""The foundation every layer may use: file I/O (atomic writes, hashes, stamps, the results
root), provenance, statistics and the table writer. It imports nothing else from t2bench
except :mod:`t2bench.errors`."""
