"""The same jobs on a cluster, through existing engines (never a home-made one).

``ray`` (joining or starting a Ray session), ``extract`` (``crossmodal data extract
--engine ray``: feature shards made by Ray Data actors) and ``train`` (``crossmodal train
--engine ray``: Ray Train workers running the torchrun code path). Multi-node training
without Ray is ``torchrun`` (:mod:`crossmodal.train.distributed`); a Milvus vector index is
a search backend (:mod:`crossmodal.index.milvus_index`).
"""
