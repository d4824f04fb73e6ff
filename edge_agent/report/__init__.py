"""Reports people look at: one self-contained HTML file per period (issue 17).

* :mod:`.model`: what a report shows, as plain data (:class:`ReportData`);
* :mod:`.records`: gathering published documents into it (latest revision of each);
* :mod:`.load`: reading it from the buffer (gateway), with the chain's verification;
* :mod:`.files`: reading it from an evidence bundle, an MQTT capture or export files;
* :mod:`.figures`: pure derivations for the charts and tables (timeline segments,
  Pareto rows, loss waterfall, stop list), always from published records;
* :mod:`.svg`: the inline SVG charts (no JavaScript, no network);
* :mod:`.html`: the page (inline CSS, phone and print layouts);
* :mod:`.serve`: the optional read-only HTTP server (``edge-agent serve-report``).

Standard library only.
"""
