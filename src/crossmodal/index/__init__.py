"""Where an index keeps what it knows: the SQLite store and the vector indexes derived from it.

``schema`` (tables and migrations), ``store`` (SQLite, the source of truth: files, vectors,
problems), ``lock`` (one writer per index directory), ``vectors`` with ``exact_index``,
``faiss_index`` and ``milvus_index`` (the vector index backends, one interface) and
``vector_file`` (their file format), and ``sync`` (keeping a derived vector index in step with
the store). :mod:`crossmodal.search` builds indexing and querying on it.
"""
