"""write_dataframe round trips (wire and HTTP) and its column handling."""

import pytest

import sluice
from conftest import settle, uniq

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

T0 = 1_700_000_000_000


def frame(n=20_000, hosts=("h1", "h 2", "h,3")):
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(T0 + np.arange(n) * 10, unit="ms"),
            "host": np.array(hosts)[np.arange(n) % len(hosts)],
            "dc": np.where(np.arange(n) % 2 == 0, "eu west", "us=east"),
            "value": rng.normal(50, 10, n).round(3),
        }
    )


@pytest.mark.parametrize("transport", ["wire", "http"])
def test_round_trip(client, transport):
    df = frame()
    m = uniq()
    n = client.timeseries.write_dataframe(df, m, entity_column="host", timestamp_column="time", tag_columns=["dc"], transport=transport, chunk_points=3000)
    assert n == len(df)
    back = settle(lambda: client.timeseries.query(m).to_pandas(), lambda d: len(d) == len(df))
    assert len(back) == len(df)
    back = back.sort_values(["time", "entity"]).reset_index(drop=True)
    want = df.rename(columns={"host": "entity"}).sort_values(["time", "entity"]).reset_index(drop=True)
    assert back["entity"].tolist() == want["entity"].tolist()
    assert back["dc"].tolist() == want["dc"].tolist()
    assert np.allclose(back["value"].to_numpy(), want["value"].to_numpy())
    assert (back["time"].dt.tz_localize(None) == want["time"]).all()


@pytest.mark.parametrize("transport", ["wire", "http"])
def test_index_timestamps_units_constants_and_nan(client, transport):
    m = uniq()
    idx = pd.date_range("2024-01-01", periods=6, freq="s", tz="Europe/Paris")
    df = pd.DataFrame({"value": [1.0, np.nan, 3.0, 4.0, np.nan, 6.0]}, index=idx)
    assert client.timeseries.write_dataframe(df, m, entity="srv", transport=transport) == 4  # NaN rows skipped
    s = client.timeseries.query(m)[0]
    assert s.entity == "srv" and s.values == [1.0, 3.0, 4.0, 6.0]
    assert s.timestamps[0] == int(idx[0].timestamp() * 1000)
    with pytest.raises(ValueError):
        client.timeseries.write_dataframe(df, m, transport=transport, nan="raise")
    m2 = uniq()
    df2 = pd.DataFrame({"ts": [1_700_000_000, 1_700_000_001], "metric": [m2, m2 + "b"], "v": [1, 2]})
    client.timeseries.write_dataframe(df2, metric_column="metric", timestamp_column="ts", timestamp_unit="s", value_column="v", transport=transport)
    assert client.timeseries.query(m2)[0].points == [(1_700_000_000_000, 1.0)]
    assert client.timeseries.query(m2 + "b")[0].points == [(1_700_000_001_000, 2.0)]
    df3 = pd.DataFrame({"t": [T0, T0 + 1], "value": [1.0, 2.0], "tag": ["x", None]})
    client.timeseries.write_dataframe(df3, m2 + "c", timestamp_column="t", tag_columns=["tag"], transport=transport)
    assert sorted(str(s.tags) for s in client.timeseries.query(m2 + "c")) == ["{'tag': 'x'}", "{}"]


def test_argument_errors(client):
    df = frame(10)
    with pytest.raises(ValueError):
        client.timeseries.write_dataframe(df)  # no metric
    with pytest.raises(ValueError):
        client.timeseries.write_dataframe(df, "m", metric_column="host")
    with pytest.raises(ValueError):
        client.timeseries.write_dataframe(df, "m", transport="carrier-pigeon")
    with pytest.raises(TypeError):
        client.timeseries.write_dataframe(df.assign(t="x"), "m", timestamp_column="t")
    with pytest.raises(ValueError):
        client.timeseries.write_dataframe(df.assign(value=np.inf), "m", timestamp_column="time")
    with pytest.raises(ValueError):  # a tag named entity cannot be line protocol
        client.timeseries.write_dataframe(df.assign(entity="e"), "m", timestamp_column="time", tag_columns=["entity"], transport="http")


@pytest.mark.parametrize("transport", ["wire", "http"])
def test_failure_reports_points_written(client, transport):
    n = 1000
    df = pd.DataFrame({"t": T0 + np.arange(n), "metric": np.where(np.arange(n) < 500, "ok_" + uniq(), "x" * 300), "value": 1.0})
    with pytest.raises(sluice.BadRequest) as e:
        client.timeseries.write_dataframe(df, metric_column="metric", timestamp_column="t", transport=transport, chunk_points=100)
    assert e.value.points_written == 500


def test_wire_frames_are_exact_items():
    from sluice import dataframe as dfm, wire

    df = pd.DataFrame({"t": [1000, 2000], "value": [1.0, 2.5]})
    ((frame_bytes, count),) = list(dfm.wire_frames(dfm.series_blocks(df, metric="cpu", entity="a", timestamp_column="t")))
    assert count == 2
    assert frame_bytes == wire.encode_ts_put([("cpu", "a", 1.0, 1000), ("cpu", "a", 2.5, 2000)])
