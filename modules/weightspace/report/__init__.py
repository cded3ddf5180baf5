"""The experiment report: ``report.md`` (`markdown`), its tables (`tables`) and figures (`plots`).

A report only reads what an experiment wrote and fits nothing; matplotlib is imported when a figure is drawn.
"""
