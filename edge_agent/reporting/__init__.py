"""Reporting: live machines and the records they report.

:mod:`.machine` holds each configured machine's sample builder and streaming
calculator, opens its report windows and restores it after a restart or a
reload; :mod:`.reporter` turns the calculators' output into KPI records, state
intervals and saved calculator state on the reporting interval; :mod:`.messages`
gives records and stop events the shape they are published in.
"""
