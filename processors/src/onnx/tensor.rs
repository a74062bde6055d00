//! Tensor values of a batch, between event JSON and ONNX Runtime: the element types tributary
//! maps ([`ElementType`]), a batch's values for one model input or output ([`Values`]), and the
//! conversions each way.

use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, TensorElementType};
use serde::Deserialize;
use serde_json::Value;

/// A tensor element type that events can fill and predictions can hold.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ElementType {
    /// 32-bit float (`tensor(float)`); JSON numbers.
    #[default]
    Float,
    /// 64-bit float (`tensor(double)`); JSON numbers.
    Double,
    /// 32-bit integer (`tensor(int32)`); JSON integers in range.
    Int32,
    /// 64-bit integer (`tensor(int64)`); JSON integers.
    Int64,
    /// Boolean (`tensor(bool)`); JSON `true`/`false`.
    Bool,
    /// String (`tensor(string)`); JSON strings, or numbers and booleans as their JSON text.
    String,
}

impl ElementType {
    /// The type of an ONNX Runtime tensor element, when tributary maps it.
    pub fn of(ty: TensorElementType) -> Option<Self> {
        Some(match ty {
            TensorElementType::Float32 => ElementType::Float,
            TensorElementType::Float64 => ElementType::Double,
            TensorElementType::Int32 => ElementType::Int32,
            TensorElementType::Int64 => ElementType::Int64,
            TensorElementType::Bool => ElementType::Bool,
            TensorElementType::String => ElementType::String,
            _ => return None,
        })
    }

    /// The type of an ONNX `TensorProto.DataType` code.
    pub fn of_onnx_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => ElementType::Float,
            11 => ElementType::Double,
            6 => ElementType::Int32,
            7 => ElementType::Int64,
            9 => ElementType::Bool,
            8 => ElementType::String,
            _ => return None,
        })
    }

    /// The name used in configs (`float`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ElementType::Float => "float",
            ElementType::Double => "double",
            ElementType::Int32 => "int32",
            ElementType::Int64 => "int64",
            ElementType::Bool => "bool",
            ElementType::String => "string",
        }
    }
}

/// One tensor's values for a batch, row after row.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// `tensor(float)`.
    Float(Vec<f32>),
    /// `tensor(double)`.
    Double(Vec<f64>),
    /// `tensor(int32)`.
    Int32(Vec<i32>),
    /// `tensor(int64)`.
    Int64(Vec<i64>),
    /// `tensor(bool)`.
    Bool(Vec<bool>),
    /// `tensor(string)`.
    String(Vec<String>),
    /// `tensor(string)` from a table made once (`ride_duration`'s `PU_DO` pairs): no string
    /// is made per row. Inputs only.
    Interned(Vec<&'static str>),
}

impl Values {
    /// Empty values of `ty`, with room for `capacity`.
    pub fn new(ty: ElementType, capacity: usize) -> Self {
        match ty {
            ElementType::Float => Values::Float(Vec::with_capacity(capacity)),
            ElementType::Double => Values::Double(Vec::with_capacity(capacity)),
            ElementType::Int32 => Values::Int32(Vec::with_capacity(capacity)),
            ElementType::Int64 => Values::Int64(Vec::with_capacity(capacity)),
            ElementType::Bool => Values::Bool(Vec::with_capacity(capacity)),
            ElementType::String => Values::String(Vec::with_capacity(capacity)),
        }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::String(v) => v.len(),
            Values::Interned(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the values after the first `len` (a record rejected half-way).
    pub fn truncate(&mut self, len: usize) {
        match self {
            Values::Float(v) => v.truncate(len),
            Values::Double(v) => v.truncate(len),
            Values::Int32(v) => v.truncate(len),
            Values::Int64(v) => v.truncate(len),
            Values::Bool(v) => v.truncate(len),
            Values::String(v) => v.truncate(len),
            Values::Interned(v) => v.truncate(len),
        }
    }

    /// Appends one event value, or says why it does not fit. Numbers that do not fit the type
    /// (a fraction for an integer, 1e300 for a float) are refused, never wrapped or made infinite.
    pub fn push(&mut self, value: &Value) -> Result<(), &'static str> {
        match (self, value) {
            (Values::Float(v), Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN) as f32;
                if !x.is_finite() {
                    return Err("is out of range for a 32-bit float");
                }
                v.push(x);
            }
            (Values::Double(v), Value::Number(n)) => {
                v.push(n.as_f64().filter(|x| x.is_finite()).ok_or("is not finite")?)
            }
            (Values::Int32(v), Value::Number(n)) => {
                v.push(n.as_i64().and_then(|x| i32::try_from(x).ok()).ok_or("must be a 32-bit integer")?);
            }
            (Values::Int64(v), Value::Number(n)) => v.push(n.as_i64().ok_or("must be an integer")?),
            (Values::Bool(v), Value::Bool(b)) => v.push(*b),
            (Values::Bool(_), _) => return Err("must be true or false"),
            (Values::String(v), Value::String(s)) => v.push(s.clone()),
            (Values::String(v), Value::Number(_) | Value::Bool(_)) => v.push(value.to_string()),
            (Values::String(_), _) => return Err("must be a string"),
            (Values::Interned(_), _) => return Err("takes no event values"),
            _ => return Err("must be a number"),
        }
        Ok(())
    }

    /// The tensor of shape `shape`.
    ///
    /// # Errors
    /// ONNX Runtime refused to build it.
    pub fn into_input(self, shape: Vec<i64>) -> Result<SessionInputValue<'static>, ort::Error> {
        Ok(match self {
            Values::Float(v) => Tensor::from_array((shape, v))?.into(),
            Values::Double(v) => Tensor::from_array((shape, v))?.into(),
            Values::Int32(v) => Tensor::from_array((shape, v))?.into(),
            Values::Int64(v) => Tensor::from_array((shape, v))?.into(),
            Values::Bool(v) => Tensor::from_array((shape, v))?.into(),
            Values::String(v) => Tensor::from_string_array((shape, v.as_slice()))?.into(),
            Values::Interned(v) => Tensor::from_string_array((shape, v.as_slice()))?.into(),
        })
    }

    /// The values of an output tensor of type `ty`.
    ///
    /// # Errors
    /// The output is not a tensor of that type.
    pub fn from_output(value: &DynValue, ty: ElementType) -> Result<Self, ort::Error> {
        Ok(match ty {
            ElementType::Float => Values::Float(value.try_extract_tensor::<f32>()?.1.to_vec()),
            ElementType::Double => Values::Double(value.try_extract_tensor::<f64>()?.1.to_vec()),
            ElementType::Int32 => Values::Int32(value.try_extract_tensor::<i32>()?.1.to_vec()),
            ElementType::Int64 => Values::Int64(value.try_extract_tensor::<i64>()?.1.to_vec()),
            ElementType::Bool => Values::Bool(value.try_extract_tensor::<bool>()?.1.to_vec()),
            ElementType::String => Values::String(value.try_extract_strings()?.1),
        })
    }

    /// Value `i` as JSON (a float that is not finite becomes `null`).
    pub fn json(&self, i: usize) -> Value {
        match self {
            Values::Float(v) => Value::from(f64::from(v[i])),
            Values::Double(v) => Value::from(v[i]),
            Values::Int32(v) => Value::from(v[i]),
            Values::Int64(v) => Value::from(v[i]),
            Values::Bool(v) => Value::from(v[i]),
            Values::String(v) => Value::from(v[i].clone()),
            Values::Interned(v) => Value::from(v[i]),
        }
    }

    /// Value `i` as a number, for comparisons (strings: `None`).
    pub fn number(&self, i: usize) -> Option<f64> {
        Some(match self {
            Values::Float(v) => f64::from(v[i]),
            Values::Double(v) => v[i],
            Values::Int32(v) => f64::from(v[i]),
            Values::Int64(v) => v[i] as f64,
            Values::Bool(v) => f64::from(u8::from(v[i])),
            Values::String(_) | Values::Interned(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_that_do_not_fit_are_refused() {
        let mut floats = Values::new(ElementType::Float, 4);
        assert!(floats.push(&json!(1e300)).is_err(), "1e300 is infinite as f32");
        assert!(floats.push(&json!("1")).is_err());
        assert!(floats.push(&json!(true)).is_err());
        floats.push(&json!(2.5)).unwrap();
        assert_eq!(floats, Values::Float(vec![2.5]));
        let mut ints = Values::new(ElementType::Int32, 2);
        assert!(ints.push(&json!(1.5)).is_err());
        assert!(ints.push(&json!(1_i64 << 40)).is_err());
        ints.push(&json!(-3)).unwrap();
        assert_eq!(ints, Values::Int32(vec![-3]));
        let mut bools = Values::new(ElementType::Bool, 1);
        assert!(bools.push(&json!(1)).is_err());
        bools.push(&json!(false)).unwrap();
        let mut strings = Values::new(ElementType::String, 2);
        strings.push(&json!(12)).unwrap();
        assert!(strings.push(&json!([1])).is_err());
        assert_eq!(strings, Values::String(vec!["12".into()]));
    }
}
