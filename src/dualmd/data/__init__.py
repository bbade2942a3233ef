"""Datasets as uint8 (N, C, H, W) arrays and the member / non-member split with its halves D1, D2.

Modules:
    datasets  loading each dataset, resizing, and saving / loading the image array with its digest
    splits    the member / non-member split, its halves, and the split file
    captioned a captioned Parquet / Arrow dataset written as an image folder with its metadata.jsonl
"""
