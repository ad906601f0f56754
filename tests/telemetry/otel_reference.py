"""The reference: opentelemetry-sdk's exponential histogram aggregation, fed value by value.

The public histogram instrument rejects negative values, so the SDK's aggregation class is
driven directly (the same object the instrument uses); its collected data point is compared."""

from __future__ import annotations

import numpy as np


def sdk_histogram(values: np.ndarray, max_size: int = 160, max_scale: int = 20) -> dict:
    from opentelemetry.context import Context
    from opentelemetry.sdk.metrics._internal.aggregation import (
        AggregationTemporality,
        _ExponentialBucketHistogramAggregation,
    )
    from opentelemetry.sdk.metrics._internal.exemplar import SimpleFixedSizeExemplarReservoir
    from opentelemetry.sdk.metrics._internal.measurement import Measurement

    agg = _ExponentialBucketHistogramAggregation(
        {}, lambda **kw: SimpleFixedSizeExemplarReservoir(**kw),
        AggregationTemporality.DELTA, 0, max_size=max_size, max_scale=max_scale,
    )
    for v in values:
        agg.aggregate(Measurement(float(v), 0, None, Context(), {}), False)
    point = agg.collect(AggregationTemporality.DELTA, 1)

    def trim(offset, counts):
        counts = list(counts)
        while counts and counts[0] == 0:
            counts.pop(0)
            offset += 1
        while counts and counts[-1] == 0:
            counts.pop()
        return (offset if counts else 0), counts

    return {
        "scale": point.scale, "count": point.count, "zero_count": point.zero_count,
        "positive": trim(point.positive.offset, point.positive.bucket_counts),
        "negative": trim(point.negative.offset, point.negative.bucket_counts),
        "sum": point.sum, "min": point.min, "max": point.max,
    }
