"""Raw data: layout readers (pairs, FAID, Extended Yale B), validation, split, demo generator.

Import the module you need (``pipeline.datasets.ingest``, ``pipeline.datasets.demo``...): this
package file stays empty so that each stage depends only on the readers it runs.
"""
