//! Typed rows ⇄ Arrow conversion at the edges of the integer types: a value that does not fit
//! its target is a dead letter with a reason, never wrapped and never a failed run.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, UInt8Type};
use serde::{Deserialize, Serialize};
use weir_operators::columnar::{ArrowStream, BatchSource, ToArrowExt};
use weir_operators::prelude::*;
use weir_runtime::{DeadLetter, InputPort, OperatorError, Pipeline, Sink};

/// Collects batches (bounded by the tests' small inputs).
#[derive(Default)]
struct Batches(Vec<RecordBatch>);

impl Sink for Batches {
    type Input = RecordBatch;
    type Output = Vec<RecordBatch>;
    fn on_batch(&mut self, _: InputPort, b: RecordBatch) -> Result<(), OperatorError> {
        self.0.push(b);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>, OperatorError> {
        Ok(std::mem::take(&mut self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, HeapSize)]
struct Wide {
    v: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, HeapSize)]
struct Narrow {
    v: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, HeapSize)]
struct Byte {
    v: u8,
}

#[test]
fn rows_to_arrow_dead_letters_values_that_do_not_fit_the_column() {
    let rows = vec![
        Wide { v: 1 },
        Wide {
            v: i64::from(i32::MAX) + 1,
        },
        Wide { v: -7 },
        Wide {
            v: i64::from(i32::MIN) - 1,
        },
        Wide {
            v: i64::from(i32::MIN),
        },
    ];
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
    let mut p = Pipeline::new("narrow");
    let arrow = p
        .source("rows", IterSource::new(rows))
        .to_arrow_with("to_arrow", schema)
        .into_inner();
    let dead = arrow.dead_letters().collect("dead");
    let out = arrow.sink("out", Batches::default());
    p.run()
        .expect("a value that does not fit is a dead letter, not a failed run");
    let got: Vec<i32> = out
        .take()
        .expect("collected")
        .iter()
        .flat_map(|b: &RecordBatch| b.column(0).as_primitive::<Int32Type>().values().to_vec())
        .collect();
    assert_eq!(got, vec![1, -7, i32::MIN]);
    let dead: Vec<DeadLetter> = dead.take().expect("collected");
    let raws: Vec<&str> = dead.iter().map(|d| d.raw.as_str()).collect();
    assert_eq!(raws, vec![r#"{"v":2147483648}"#, r#"{"v":-2147483649}"#]);
    for d in &dead {
        assert_eq!(
            d.reason,
            "to_arrow: Error: integer conversion failed: out of range integral type conversion \
             attempted (data_type: \"Int32\", field: \"$.v\")"
        );
    }
}

#[test]
fn arrow_to_rows_dead_letters_values_that_do_not_fit_the_field() {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![
            3,
            i64::from(i32::MAX) + 1,
            i64::from(i32::MAX),
            -1 - i64::from(i32::MAX) - 1,
        ])) as ArrayRef],
    )
    .expect("matching");
    let mut p = Pipeline::new("narrow");
    let rows = ArrowStream::source(&mut p, "src", BatchSource::new(schema, vec![batch]))
        .to_rows::<Narrow>("to_rows");
    let dead = rows.dead_letters().collect("dead");
    let out = rows.collect("out");
    p.run()
        .expect("a value that does not fit is a dead letter, not a failed run");
    assert_eq!(
        out.take().expect("collected"),
        vec![Narrow { v: 3 }, Narrow { v: i32::MAX }]
    );
    let dead: Vec<DeadLetter> = dead.take().expect("collected");
    let raws: Vec<&str> = dead.iter().map(|d| d.raw.as_str()).collect();
    assert_eq!(raws, vec![r#"{"v":2147483648}"#, r#"{"v":-2147483649}"#]);
    assert!(
        dead.iter()
            .all(|d| d.reason.starts_with("to_rows: ") && d.reason.contains("$.v")),
        "{dead:?}"
    );
}

#[test]
fn unsigned_narrowing_and_sign_never_wrap() {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::UInt64, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from(vec![
            Some(255),
            Some(256),
            None,
            Some(u64::MAX),
        ])) as ArrayRef],
    )
    .expect("matching");
    let mut p = Pipeline::new("u8");
    let rows = ArrowStream::source(&mut p, "src", BatchSource::new(schema, vec![batch]))
        .to_rows::<Byte>("to_rows");
    let dead = rows.dead_letters().collect("dead");
    let out = rows.collect("out");
    p.run().expect("runs");
    assert_eq!(out.take().expect("collected"), vec![Byte { v: 255 }]);
    let dead: Vec<DeadLetter> = dead.take().expect("collected");
    let raws: Vec<&str> = dead.iter().map(|d| d.raw.as_str()).collect();
    assert_eq!(
        raws,
        vec![r#"{"v":256}"#, "{}", r#"{"v":18446744073709551615}"#]
    );

    // Signed into an unsigned column.
    let u8_schema = Arc::new(Schema::new(vec![Field::new("v", DataType::UInt8, false)]));
    let mut p = Pipeline::new("sign");
    let arrow = p
        .source(
            "rows",
            IterSource::new(vec![Wide { v: -1 }, Wide { v: 200 }, Wide { v: 256 }]),
        )
        .to_arrow_with("to_arrow", u8_schema)
        .into_inner();
    let dead = arrow.dead_letters().collect("dead");
    let out = arrow.sink("out", Batches::default());
    p.run().expect("runs");
    let got: Vec<u8> = out
        .take()
        .expect("collected")
        .iter()
        .flat_map(|b: &RecordBatch| b.column(0).as_primitive::<UInt8Type>().values().to_vec())
        .collect();
    assert_eq!(got, vec![200]);
    assert_eq!(dead.take().expect("collected").len(), 2);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, HeapSize)]
struct Dec {
    v: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, HeapSize)]
struct DecF {
    v: f64,
}

#[test]
fn decimals_that_do_not_fit_exactly_are_dead_letters() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        DataType::Decimal128(5, 2),
        false,
    )]));
    let texts = ["123.45", "1000.00", "1.005", "", "-999.99", "abc"];
    let floats = [0.1, 1000.0, 1.005, 1e30, 999.99, 0.29, 0.57, -0.29];
    let mut p = Pipeline::new("decimals");
    let s = p
        .source(
            "s",
            IterSource::new(
                texts
                    .iter()
                    .map(|v| Dec { v: (*v).into() })
                    .collect::<Vec<_>>(),
            ),
        )
        .to_arrow_with("s_arrow", schema.clone())
        .into_inner();
    let f = p
        .source(
            "f",
            IterSource::new(floats.iter().map(|v| DecF { v: *v }).collect::<Vec<_>>()),
        )
        .to_arrow_with("f_arrow", schema)
        .into_inner();
    let (s_dead, f_dead) = (
        s.dead_letters().collect("s_dead"),
        f.dead_letters().collect("f_dead"),
    );
    let (s_out, f_out) = (
        s.sink("s_out", Batches::default()),
        f.sink("f_out", Batches::default()),
    );
    p.run().expect("runs");
    let values = |b: Vec<RecordBatch>| -> Vec<i128> {
        b.iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Decimal128Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(
        values(s_out.take().expect("collected")),
        vec![12345, -99999]
    );
    assert_eq!(
        values(f_out.take().expect("collected")),
        vec![10, 99999, 29, 57, -29]
    );
    let raws = |d: Vec<DeadLetter>| d.into_iter().map(|d| d.raw).collect::<Vec<_>>();
    assert_eq!(
        raws(s_dead.take().expect("collected")),
        vec![
            r#"{"v":"1000.00"}"#,
            r#"{"v":"1.005"}"#,
            r#"{"v":""}"#,
            r#"{"v":"abc"}"#
        ]
    );
    let f_dead: Vec<DeadLetter> = f_dead.take().expect("collected");
    assert_eq!(
        f_dead.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(),
        vec![
            "f_arrow: column `v`: \"1000.0\" is not a decimal that Decimal128(5, 2) holds exactly",
            "f_arrow: column `v`: \"1.005\" is not a decimal that Decimal128(5, 2) holds exactly",
            "f_arrow: column `v`: \"1e+30\" is not a decimal that Decimal128(5, 2) holds exactly",
        ]
    );
}
