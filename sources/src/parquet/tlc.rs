//! NYC TLC yellow-taxi trip records, generated: the real files' columns, names and types, with
//! realistic values (`tributary tlc-sample`). The real files cannot be downloaded on every
//! machine; these stand in for them in tests, the demo folder and the benchmarks.
//!
//! Three schema years, as published:
//! - **2022**: `VendorID` int64, `passenger_count` and `RatecodeID` double, zone ids int64,
//!   `airport_fee` (lower case), 19 columns;
//! - **2023-2024**: `VendorID` int32, `passenger_count` and `RatecodeID` int64, zone ids
//!   int32, `Airport_fee`, 19 columns;
//! - **2025 on**: as 2024 plus `cbd_congestion_fee`, 20 columns.
//!
//! About 3% of rows have the nulls real files have (no passenger count, rate code, flag,
//! congestion surcharge or airport fee; `payment_type` 0). `bad_rows` adds rows a model must
//! not score: a null or out-of-range zone id, a negative distance.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to generate.
#[derive(Clone, Debug)]
pub struct MonthSpec {
    /// The month's year (chooses the schema).
    pub year: i32,
    /// 1-12.
    pub month: u32,
    /// Rows to write.
    pub rows: u64,
    /// Random seed.
    pub seed: u64,
    /// Every `n`th row is bad (a null or out-of-range zone id, or a negative distance); 0: none.
    pub bad_every: u64,
    /// Rows per row group (the real files use about a million).
    pub row_group_rows: usize,
}

/// Busy zones (Manhattan, the airports): most pickups and drop-offs are in them.
const CORE: [i64; 40] = [
    161, 162, 163, 164, 170, 186, 230, 236, 237, 48, 68, 79, 90, 100, 107, 113, 114, 125, 137, 140, 141, 142, 143, 144,
    148, 151, 158, 166, 211, 224, 229, 231, 234, 238, 239, 246, 249, 261, 132, 138,
];

/// The file name TLC publishes the month under.
pub fn file_name(year: i32, month: u32) -> String {
    format!("yellow_tripdata_{year:04}-{month:02}.parquet")
}

/// The schema of `year`'s files.
pub fn schema(year: i32) -> Schema {
    let old = year <= 2022;
    let (small_int, count) =
        if old { (DataType::Int64, DataType::Float64) } else { (DataType::Int32, DataType::Int64) };
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let mut fields = vec![
        Field::new("VendorID", small_int.clone(), true),
        Field::new("tpep_pickup_datetime", ts.clone(), true),
        Field::new("tpep_dropoff_datetime", ts, true),
        Field::new("passenger_count", count.clone(), true),
        Field::new("trip_distance", DataType::Float64, true),
        Field::new("RatecodeID", count, true),
        Field::new("store_and_fwd_flag", DataType::Utf8, true),
        Field::new("PULocationID", small_int.clone(), true),
        Field::new("DOLocationID", small_int, true),
        Field::new("payment_type", DataType::Int64, true),
    ];
    for name in [
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "improvement_surcharge",
        "total_amount",
        "congestion_surcharge",
    ] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new(if old { "airport_fee" } else { "Airport_fee" }, DataType::Float64, true));
    if year >= 2025 {
        fields.push(Field::new("cbd_congestion_fee", DataType::Float64, true));
    }
    Schema::new(fields)
}

/// Writes one month to `path` (zstd, like the published files' own compression choice of a
/// modern writer), a chunk at a time so memory stays small.
///
/// # Errors
/// The file cannot be written, or the spec is invalid.
pub fn write_month(path: &Path, spec: &MonthSpec) -> Result<(), String> {
    if !(1..=12).contains(&spec.month) {
        return Err(format!("month must be 1-12, found {}", spec.month));
    }
    let schema = Arc::new(schema(spec.year));
    let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(spec.row_group_rows.max(1)))
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rng = StdRng::seed_from_u64(spec.seed ^ (u64::from(spec.month) << 32) ^ spec.year as u64);
    let start = month_start_micros(spec.year, spec.month);
    let days = days_in_month(spec.year, spec.month);
    let mut written = 0u64;
    while written < spec.rows {
        let n = (spec.rows - written).min(65_536) as usize;
        let batch = chunk(&schema, spec, &mut rng, written, n, start, days)?;
        writer.write(&batch).map_err(|e| format!("{}: {e}", path.display()))?;
        written += n as u64;
    }
    writer.close().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// Rows `first..first + n`.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "bounded synthetic values")]
fn chunk(
    schema: &Arc<Schema>,
    spec: &MonthSpec,
    rng: &mut StdRng,
    first: u64,
    n: usize,
    month_start: i64,
    days: i64,
) -> Result<RecordBatch, String> {
    let old = spec.year <= 2022;
    let mut vendor = Vec::with_capacity(n);
    let (mut pickup, mut dropoff) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut passengers, mut rate) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut distance, mut flag) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut pu, mut dz, mut payment) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut money: [Vec<Option<f64>>; 10] = Default::default();
    for i in 0..n {
        let row = first + i as u64;
        let missing = rng.random_bool(0.03);
        let t0 = month_start + rng.random_range(0..days * 86_400) * 1_000_000;
        let miles = (-rng.random::<f64>().ln() * 1.6 + rng.random_range(0.0..0.6)).min(60.0);
        let miles = (miles * 100.0).round() / 100.0;
        let minutes = (miles * 3.2 + 4.0 + rng.random_range(-2.0..6.0_f64)).max(1.0);
        let pickup_zone = zone(rng);
        let dropoff_zone = zone(rng);
        let (mut pickup_zone, mut miles_out) = (Some(pickup_zone), miles);
        let mut dropoff_zone = Some(dropoff_zone);
        if spec.bad_every > 0 && row % spec.bad_every == spec.bad_every - 1 {
            match (row / spec.bad_every) % 3 {
                0 => pickup_zone = None,
                1 => dropoff_zone = Some(300),
                _ => miles_out = -miles.max(0.5),
            }
        }
        vendor.push(Some(if rng.random_bool(0.7) { 2 } else { 1 }));
        pickup.push(Some(t0));
        dropoff.push(Some(t0 + (minutes * 60e6) as i64));
        let count = rng.random_range(1..=4_i64);
        passengers.push((!missing).then_some(count));
        rate.push((!missing).then_some(if pickup_zone == Some(132) { 2 } else { 1 }));
        distance.push(Some(miles_out));
        flag.push((!missing).then_some(if rng.random_bool(0.005) { "Y" } else { "N" }));
        pu.push(pickup_zone);
        dz.push(dropoff_zone);
        payment.push(Some(if missing { 0 } else { rng.random_range(1..=2_i64) }));
        let fare = ((3.0 + 2.5 * miles + 0.7 * minutes) * 100.0).round() / 100.0;
        let tip = if payment.last() == Some(&Some(1)) { (fare * 0.2 * 100.0).round() / 100.0 } else { 0.0 };
        let congestion = (!missing).then_some(2.5);
        let airport =
            (!missing).then_some(if pickup_zone == Some(132) || pickup_zone == Some(138) { 1.75 } else { 0.0 });
        let total = fare + 1.0 + 0.5 + tip + 1.0 + congestion.unwrap_or(0.0) + airport.unwrap_or(0.0);
        for (column, value) in money.iter_mut().zip([
            Some(fare),
            Some(1.0),
            Some(0.5),
            Some(tip),
            Some(0.0),
            Some(1.0),
            Some((total * 100.0).round() / 100.0),
            congestion,
            airport,
            (!missing).then_some(0.75),
        ]) {
            column.push(value);
        }
    }
    let small = |v: Vec<Option<i64>>| -> ArrayRef {
        if old {
            Arc::new(Int64Array::from(v))
        } else {
            Arc::new(Int32Array::from(v.into_iter().map(|x| x.map(|x| x as i32)).collect::<Vec<_>>()))
        }
    };
    let count = |v: Vec<Option<i64>>| -> ArrayRef {
        if old {
            Arc::new(Float64Array::from(v.into_iter().map(|x| x.map(|x| x as f64)).collect::<Vec<_>>()))
        } else {
            Arc::new(Int64Array::from(v))
        }
    };
    let mut columns: Vec<ArrayRef> = vec![
        small(vendor),
        Arc::new(TimestampMicrosecondArray::from(pickup)),
        Arc::new(TimestampMicrosecondArray::from(dropoff)),
        count(passengers),
        Arc::new(Float64Array::from(distance)),
        count(rate),
        Arc::new(StringArray::from(flag)),
        small(pu),
        small(dz),
        Arc::new(Int64Array::from(payment)),
    ];
    let money_columns = if spec.year >= 2025 { 10 } else { 9 };
    for column in money.into_iter().take(money_columns) {
        columns.push(Arc::new(Float64Array::from(column)));
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

fn zone(rng: &mut StdRng) -> i64 {
    if rng.random_bool(0.85) { CORE[rng.random_range(0..CORE.len())] } else { rng.random_range(1..=265) }
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let next = if month == 12 { days_from_civil(year + 1, 1) } else { days_from_civil(year, month + 1) };
    next - days_from_civil(year, month)
}

fn month_start_micros(year: i32, month: u32) -> i64 {
    days_from_civil(year, month) * 86_400 * 1_000_000
}

/// Days from 1970-01-01 to the first of the month (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32) -> i64 {
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let m = i64::from(month);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1), 0);
        assert_eq!(days_from_civil(2024, 3) - days_from_civil(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
    }

    #[test]
    fn schema_years() {
        assert_eq!(schema(2022).fields().len(), 19);
        assert!(schema(2022).field_with_name("airport_fee").is_ok());
        assert_eq!(schema(2024).field_with_name("PULocationID").unwrap().data_type(), &DataType::Int32);
        assert_eq!(schema(2025).fields().len(), 20);
    }
}
