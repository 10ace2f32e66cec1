"""The stages of REALM, one module each, next to the tasks they train (tasks.py, openqa_task.py).

Every stage is a config dataclass and `run(config, strategy=None) -> summary dict`, called by its
CLI in `realm_tf.launch` (which only turns flags into the config) and by the main job:

    ict_experiment.run(IctJobConfig)              ICT warm start → first export and bundle
    reader_warmup.run(ReaderWarmupJobConfig)      MLM warm-up of the reader, no retrieval
    realm_experiment.run(RealmJobConfig)          REALM pre-training with index refresh
    pretrain_job.run(PretrainJobConfig)           the main job: every stage above, in order
    refresh_job.run(RefreshJobConfig)             the index-refresh job (watch / once / update)
    finetune.run(FinetuneJobConfig)               open-QA fine-tuning over a frozen index
    evaluate.run(EvaluateConfig)                  open-QA EM and recall@k, dense or BM25
    export_job.run(ExportConfig)                  SavedModels in TF Serving's layout

docs/ARCHITECTURE.md has the table of each stage's CLI, inputs and outputs.
"""
