"""Build the subscription and monitored-item requests the link sends (pure, no I/O).

Kept apart from :mod:`drivers.opcua.link` so the parameters that matter in
the field (keepalive count versus the silence watchdog, sampling interval,
queue size, deadband filter) are values that can be unit-tested without a
server. Guarantees: a subscription always speaks (data or keepalive) at
least three times per watchdog period; a monitored item without a
configured sampling interval samples at the publishing interval.
"""

from __future__ import annotations

from asyncua import ua

from drivers.opcua._ua import AttributeIds
from drivers.opcua.config import DeadbandType, OpcuaTag

#: Lifetime count as a multiple of the keepalive count (OPC-UA requires at least 3).
LIFETIME_FACTOR = 10


def keepalive_count(interval_ms: int, watchdog_s: float) -> int:
    """Keepalive count so an idle subscription speaks at least 3 times per watchdog period."""
    return max(1, int(watchdog_s * 1000 / 3 / interval_ms))


def subscription_parameters(interval_ms: int, watchdog_s: float) -> ua.CreateSubscriptionParameters:
    """CreateSubscription parameters for one publishing interval."""
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = float(interval_ms)
    params.RequestedMaxKeepAliveCount = keepalive_count(interval_ms, watchdog_s)
    params.RequestedLifetimeCount = params.RequestedMaxKeepAliveCount * LIFETIME_FACTOR
    params.MaxNotificationsPerPublish = 0  # no limit
    params.PublishingEnabled = True
    params.Priority = 0
    return params


def monitored_item_request(
    handle: int, node_id: ua.NodeId, tag: OpcuaTag, interval_ms: int, *, with_filter: bool
) -> ua.MonitoredItemCreateRequest:
    """One monitored item on the Value attribute, with the tag's sampling/queue/deadband settings.

    Args:
        handle: Client handle (unique within the subscription).
        node_id: Resolved node.
        tag: Tag settings.
        interval_ms: The device's publishing interval (default sampling interval).
        with_filter: Include the deadband DataChangeFilter when the tag has one.
    """
    rv = ua.ReadValueId()
    rv.NodeId = node_id
    rv.AttributeId = AttributeIds.Value
    mparams = ua.MonitoringParameters()
    mparams.ClientHandle = handle
    sampling = tag.sampling_interval_ms if tag.sampling_interval_ms is not None else interval_ms
    mparams.SamplingInterval = float(sampling)
    mparams.QueueSize = tag.queue_size
    mparams.DiscardOldest = True
    if with_filter and tag.deadband is not None:
        flt = ua.DataChangeFilter()
        flt.Trigger = ua.DataChangeTrigger.StatusValue
        flt.DeadbandType = (
            ua.DeadbandType.Absolute
            if tag.deadband_type is DeadbandType.ABSOLUTE
            else ua.DeadbandType.Percent
        )
        flt.DeadbandValue = tag.deadband
        mparams.Filter = flt
    mir = ua.MonitoredItemCreateRequest()
    mir.ItemToMonitor = rv
    mir.MonitoringMode = ua.MonitoringMode.Reporting
    mir.RequestedParameters = mparams
    return mir
