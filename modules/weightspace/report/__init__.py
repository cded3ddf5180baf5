"""The experiment report: ``report.md`` (`markdown`), its tables (`tables`) and figures (`plots`).

A report only reads what an experiment wrote; matplotlib and umap are imported when a figure is drawn.
"""
