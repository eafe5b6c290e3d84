"""Files: strict readers, atomic writers and locks (:mod:`.files`), JSON files with line-numbered errors
(:mod:`.jsonfile`), and path components checked before they name a file (:mod:`.safepath`).

The bottom layer: it imports nothing from the package but :mod:`noisyclip_metrics.errors`.
"""
