//! An allow-listed unpickler: a pickle virtual machine that builds only plain values, tensor
//! references and storage references, and refuses every other global before anything runs.
//!
//! Python's own unpickler calls whatever `module.name` a pickle names; that is how a `.pth` file
//! can run `os.system`. This one knows a short list of globals (below) and answers any other with
//! [`WeightsError::ForbiddenGlobal`]. Nothing here executes anything: `REDUCE` on an allowed
//! global is interpreted by hand.
//!
//! A pickle is a program, so a small file can describe a huge or endless object. The machine
//! charges every value it keeps to the file's memory [`Budget`]; strings and containers are shared,
//! never deep-copied, when the memo hands them out again; no walk over a value recurses (a list
//! nested 200,000 deep is freed iteratively, see `Drop for Value`); and reference cycles are
//! broken when the result is dropped ([`Unpickled`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::error::{Result, WeightsError};
use crate::limits::{Budget, MAX_TENSOR_RANK};
use crate::tensor::DType;

/// The globals a state dict needs, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2` and `_rebuild_tensor`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter` and `_rebuild_parameter_with_state`.
    RebuildParameter,
    /// `torch.FloatStorage` and friends: names a storage's element type.
    Storage(DType),
    /// `_codecs.encode`: how protocol 2 spells a `bytes` object.
    CodecsEncode,
}

fn allowed_global(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => Global::RebuildParameter,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", storage) => Global::Storage(match storage {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        }),
        _ => return None,
    })
}

/// A reference to a storage, resolved by the container format (zip entry or legacy trailer).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    pub dtype: DType,
    pub key: String,
    /// Element offset into the root storage (legacy views only; 0 otherwise).
    pub view_offset: usize,
}

/// A tensor as the pickle describes it: a strided view into a storage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

/// A value on the unpickler's stack. Plain values keep their payloads so a pickle is read
/// faithfully, even where graft only needs the tensors.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    // Boxed: they are rare, and keep every other value small.
    Storage(Box<StorageRef>),
    Tensor(Box<TensorRef>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// Calls `f` with a tuple's or list's items, borrowed: a memoised container handed to many
    /// opcodes is read in place each time, never copied.
    fn with_items<R>(&self, f: impl FnOnce(&[Value]) -> R) -> Option<R> {
        match self {
            Value::Tuple(items) => Some(f(items)),
            Value::List(items) => items.try_borrow().ok().map(|items| f(&items)),
            _ => None,
        }
    }

    pub(crate) fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(v) => usize::try_from(*v).ok(),
            _ => None,
        }
    }

    /// Moves this value's children into `out` when nothing else refers to it; a shared container
    /// keeps them (its last owner will take them).
    fn take_children_if_unique(&mut self, out: &mut Vec<Value>) {
        match self {
            Value::Tuple(items) => {
                if let Some(items) = Rc::get_mut(items) {
                    out.append(items);
                }
            }
            Value::List(items) => {
                if let Some(items) = Rc::get_mut(items) {
                    out.append(items.get_mut());
                }
            }
            Value::Dict(entries) => {
                if let Some(entries) = Rc::get_mut(entries) {
                    out.extend(entries.get_mut().drain(..).flat_map(|(key, value)| [key, value]));
                }
            }
            _ => {}
        }
    }

    /// Moves this value's children into `out` even when the container is shared: used when the
    /// whole object graph is being freed, to break reference cycles.
    fn take_children_forced(&mut self, out: &mut Vec<Value>) {
        match self {
            Value::List(items) => {
                if let Ok(mut items) = items.try_borrow_mut() {
                    out.append(&mut items);
                }
            }
            Value::Dict(entries) => {
                if let Ok(mut entries) = entries.try_borrow_mut() {
                    out.extend(entries.drain(..).flat_map(|(key, value)| [key, value]));
                }
            }
            other => other.take_children_if_unique(out),
        }
    }
}

/// Frees nested values with a worklist instead of recursion, so that nesting depth cannot
/// overflow the stack. Each value's children are moved out before it is dropped, so the drop
/// of a child finds nothing below it.
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        self.take_children_if_unique(&mut pending);
        while let Some(mut value) = pending.pop() {
            value.take_children_if_unique(&mut pending);
        }
    }
}

/// Frees a whole object graph, cycles included.
fn free_all(values: Vec<Value>) {
    let mut pending = values;
    while let Some(mut value) = pending.pop() {
        value.take_children_forced(&mut pending);
    }
}

/// One pickle's result, with everything else the machine built (its memo and leftover stack),
/// all freed together when this is dropped so that cycles among them do not leak.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub(crate) root: Value,
    rest: Vec<Value>,
}

impl Drop for Unpickled {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut self.rest);
        all.push(std::mem::replace(&mut self.root, Value::None));
        free_all(all);
    }
}

enum Slot {
    Mark,
    Value(Value),
}

/// Runs one pickle from `data[*position..]`, stopping at its `STOP`; `position` is left just after
/// it. Everything the pickle builds is charged to `budget`.
pub(crate) fn unpickle(path: &Path, data: &[u8], position: &mut usize, budget: &Budget) -> Result<Unpickled> {
    let mut machine = Machine { path, data, position: *position, stack: Vec::new(), memo: HashMap::new(), budget };
    let result = machine.run();
    let rest: Vec<Value> = machine
        .stack
        .drain(..)
        .filter_map(|slot| match slot {
            Slot::Value(value) => Some(value),
            Slot::Mark => None,
        })
        .chain(machine.memo.drain().map(|(_, value)| value))
        .collect();
    match result {
        Ok(root) => {
            *position = machine.position;
            Ok(Unpickled { root, rest })
        }
        Err(error) => {
            free_all(rest);
            Err(error)
        }
    }
}

struct Machine<'a> {
    path: &'a Path,
    data: &'a [u8],
    position: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
    budget: &'a Budget<'a>,
}

/// What one value costs in memory (its slot; strings and bytes are charged their length too).
const VALUE_BYTES: usize = std::mem::size_of::<Value>();
// The budget charges a slot per value; large variants are boxed to keep slots this small.
const _: () = assert!(VALUE_BYTES <= 32);

impl<'a> Machine<'a> {
    fn error(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Pickle { path: self.path.to_owned(), offset: self.position, reason: reason.into() }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8]> {
        let end = self.position.checked_add(count).filter(|end| *end <= self.data.len()).ok_or_else(|| {
            WeightsError::Truncated {
                path: self.path.to_owned(),
                what: format!("pickle ends inside an opcode at byte {}", self.position),
            }
        })?;
        let bytes = &self.data[self.position..end];
        self.position = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64_len(&mut self) -> Result<usize> {
        let value = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        usize::try_from(value).map_err(|_| self.error("length overflows"))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.position..];
        let end = rest.iter().position(|b| *b == b'\n').ok_or_else(|| WeightsError::Truncated {
            path: self.path.to_owned(),
            what: "pickle ends inside a text opcode".into(),
        })?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| self.error("text opcode is not UTF-8"))?;
        self.position += end + 1;
        Ok(line)
    }

    fn utf8(&self, bytes: &[u8]) -> Result<Value> {
        self.charge(bytes.len(), "a string")?;
        let text = std::str::from_utf8(bytes).map_err(|_| self.error("string is not UTF-8"))?;
        Ok(Value::Str(Rc::from(text)))
    }

    /// A string pickled as latin-1 bytes (protocol 0-2 `str` of Python 2): one char per byte.
    fn latin1(&self, bytes: &[u8]) -> Result<Value> {
        self.charge(bytes.len().saturating_mul(2), "a string")?;
        Ok(Value::Str(bytes.iter().map(|b| *b as char).collect::<String>().into()))
    }

    fn bytes(&self, bytes: &[u8]) -> Result<Value> {
        self.charge(bytes.len(), "a bytes object")?;
        Ok(Value::Bytes(Rc::from(bytes)))
    }

    fn charge(&self, bytes: usize, what: &str) -> Result<()> {
        self.budget.charge(bytes as u64, || format!("the pickle's values (at byte {}, {what})", self.position))
    }

    /// Counts `steps` items of work (an opcode, an item moved or read) against the step budget.
    fn work(&self, steps: usize) -> Result<()> {
        self.budget.work(steps as u64, || format!("the pickle's program (at byte {})", self.position))
    }

    fn push(&mut self, value: Value) -> Result<()> {
        self.charge(VALUE_BYTES, "a stack value")?;
        self.stack.push(Slot::Value(value));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Slot::Value(value)) => Ok(value),
            Some(Slot::Mark) => Err(self.error("unexpected MARK on the stack")),
            None => Err(self.error("stack underflow")),
        }
    }

    fn top(&self) -> Result<&Value> {
        match self.stack.last() {
            Some(Slot::Value(value)) => Ok(value),
            _ => Err(self.error("expected a value on top of the stack")),
        }
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|slot| matches!(slot, Slot::Mark))
            .ok_or_else(|| self.error("no MARK on the stack"))?;
        self.work(self.stack.len() - mark)?;
        let items = if mark < self.stack.len() - mark {
            // Fewer slots below the mark than above it (a long run of items): the items keep
            // the stack's buffer and the few slots below move to a new one, so a huge run is
            // never copied.
            let mut items = std::mem::take(&mut self.stack);
            self.stack = items.drain(..=mark).collect();
            self.stack.pop();
            items
        } else {
            let items = self.stack.split_off(mark + 1);
            self.stack.pop();
            items
        };
        Ok(items
            .into_iter()
            .map(|slot| match slot {
                Slot::Value(value) => value,
                Slot::Mark => unreachable!("the last mark was found above"),
            })
            .collect())
    }

    fn global(&self, module: &str, name: &str) -> Result<Value> {
        allowed_global(module, name).map(Value::Global).ok_or_else(|| WeightsError::ForbiddenGlobal {
            path: self.path.to_owned(),
            module: module.to_owned(),
            name: name.to_owned(),
        })
    }

    fn memo_get(&self, index: u32) -> Result<Value> {
        let value = self.memo.get(&index).ok_or_else(|| self.error(format!("memo entry {index} is empty")))?;
        // Containers and strings are shared; a tensor reference is copied with its dimensions.
        if let Value::Tensor(tensor) = value {
            self.work(tensor.shape.len() * 2)?;
        }
        Ok(value.clone())
    }

    fn memo_put(&mut self, index: u32) -> Result<()> {
        let value = self.top()?.clone();
        self.charge(2 * VALUE_BYTES, "a memo entry")?;
        self.memo.insert(index, value);
        Ok(())
    }

    fn set_items(&mut self, dict: &Value, items: Vec<Value>) -> Result<()> {
        let Value::Dict(entries) = dict else {
            return Err(self.error(format!("SETITEM on a {}", dict.kind())));
        };
        if !items.len().is_multiple_of(2) {
            return Err(self.error("SETITEMS with an odd number of items"));
        }
        self.work(items.len())?;
        let mut entries = entries.borrow_mut();
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            entries.push((key, value));
        }
        Ok(())
    }

    fn append(&mut self, list: &Value, items: Vec<Value>) -> Result<()> {
        self.work(items.len())?;
        match list {
            Value::List(entries) => {
                let mut entries = entries.borrow_mut();
                if entries.is_empty() {
                    *entries = items;
                } else {
                    entries.extend(items);
                }
                Ok(())
            }
            other => Err(self.error(format!("APPEND on a {}", other.kind()))),
        }
    }

    fn int_from_le(&self, bytes: &[u8]) -> Result<i128> {
        if bytes.len() > 16 {
            return Err(self.error(format!("integer of {} bytes is too large", bytes.len())));
        }
        if bytes.is_empty() {
            return Ok(0);
        }
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buffer = if negative { [0xffu8; 16] } else { [0u8; 16] };
        buffer[..bytes.len()].copy_from_slice(bytes);
        Ok(i128::from_le_bytes(buffer))
    }

    /// Interprets `callable(*args)` for the allowed globals. `args` is read in place.
    fn reduce(&self, callable: Value, args: Value) -> Result<Value> {
        let Value::Global(global) = callable else {
            return Err(self.error(format!("REDUCE on a {}, not a global", callable.kind())));
        };
        let Value::Tuple(args) = &args else {
            return Err(self.error(format!("REDUCE arguments are a {}, not a tuple", args.kind())));
        };
        match global {
            Global::OrderedDict => {
                let entries = match args.first() {
                    None => Vec::new(),
                    Some(pairs) => pairs
                        .with_items(|pairs| {
                            self.work(pairs.len())?;
                            self.charge(pairs.len().saturating_mul(3 * VALUE_BYTES), "an OrderedDict")?;
                            pairs
                                .iter()
                                .map(|pair| {
                                    pair.with_items(|pair| match pair {
                                        [key, value] => Some((key.clone(), value.clone())),
                                        _ => None,
                                    })
                                    .flatten()
                                    .ok_or_else(|| self.error("OrderedDict item is not a pair"))
                                })
                                .collect::<Result<Vec<_>>>()
                        })
                        .ok_or_else(|| self.error("OrderedDict argument is not a list"))??,
                };
                Ok(Value::Dict(Rc::new(RefCell::new(entries))))
            }
            Global::RebuildTensor => {
                let [storage, offset, shape, strides, ..] = args.as_slice() else {
                    return Err(self.error("_rebuild_tensor needs (storage, offset, size, stride)"));
                };
                let Value::Storage(storage) = storage else {
                    return Err(self.error(format!("_rebuild_tensor on a {}, not a storage", storage.kind())));
                };
                let dims = |value: &Value, what: &str| {
                    value
                        .with_items(|items| {
                            if items.len() > MAX_TENSOR_RANK {
                                return Err(self.error(format!(
                                    "tensor {what} has {} dimensions, more than the {MAX_TENSOR_RANK} graft reads",
                                    items.len()
                                )));
                            }
                            self.work(items.len())?;
                            items
                                .iter()
                                .map(Value::as_usize)
                                .collect::<Option<Vec<_>>>()
                                .ok_or_else(|| self.error(format!("tensor {what} is not a tuple of integers")))
                        })
                        .ok_or_else(|| self.error(format!("tensor {what} is not a tuple of integers")))?
                };
                let shape = dims(shape, "size")?;
                let strides = dims(strides, "stride")?;
                if shape.len() != strides.len() {
                    return Err(self.error(format!("tensor size {shape:?} and stride {strides:?} differ in rank")));
                }
                let offset = offset.as_usize().ok_or_else(|| self.error("tensor offset is not an integer"))?;
                Ok(Value::Tensor(Box::new(TensorRef { storage: StorageRef::clone(storage), offset, shape, strides })))
            }
            Global::RebuildParameter => match args.first() {
                Some(tensor @ Value::Tensor(_)) => Ok(tensor.clone()),
                _ => Err(self.error("_rebuild_parameter without a tensor")),
            },
            Global::CodecsEncode => match args.first() {
                // `bytes` pickled at protocol 2: the text holds one character per byte (latin-1).
                Some(Value::Str(text)) => {
                    self.work(text.len())?;
                    self.charge(text.len(), "a bytes object")?;
                    Ok(Value::Bytes(text.chars().map(|c| c as u32 as u8).collect()))
                }
                _ => Err(self.error("_codecs.encode without a string")),
            },
            Global::Storage(_) => Err(self.error("storage types cannot be called")),
        }
    }

    /// `('storage', storage_type, key, location, numel[, view_metadata])`.
    fn persistent_load(&self, pid: Value) -> Result<Value> {
        let Value::Tuple(items) = &pid else {
            return Err(self.error(format!("persistent id is a {}, not a tuple", pid.kind())));
        };
        match items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, _numel, rest @ ..]
                if &**tag == "storage" =>
            {
                let key = match key {
                    Value::Str(key) => key.to_string(),
                    Value::Int(key) => key.to_string(),
                    other => return Err(self.error(format!("storage key is a {}", other.kind()))),
                };
                let view_offset = match rest.first() {
                    None | Some(Value::None) => 0,
                    Some(view) => match view.with_items(|view| match view {
                        [_view_key, offset, _size] => Some(offset.as_usize()),
                        _ => None,
                    }) {
                        Some(Some(Some(offset))) => offset,
                        Some(Some(None)) => return Err(self.error("storage view offset is not an integer")),
                        _ => return Err(self.error("storage view metadata is not (key, offset, size)")),
                    },
                };
                Ok(Value::Storage(Box::new(StorageRef { dtype: *dtype, key, view_offset })))
            }
            _ => Err(self.error("persistent id is not a ('storage', type, key, location, numel) tuple")),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.work(1)?;
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(self.error(format!("unknown pickle protocol {protocol}")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only.
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.charge(VALUE_BYTES, "a MARK")?;
                    self.stack.push(Slot::Mark);
                }
                b'0' => {
                    self.stack.pop().ok_or_else(|| self.error("POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                b'2' => {
                    let value = self.top()?.clone();
                    self.push(value)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let value = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    self.push(Value::Int(value as i128))?;
                }
                b'K' => {
                    let value = self.u8()?;
                    self.push(Value::Int(value as i128))?;
                }
                b'M' => {
                    let value = self.u16()?;
                    self.push(Value::Int(value as i128))?;
                }
                0x8a => {
                    let length = self.u8()? as usize;
                    let bytes = self.take(length)?;
                    let value = self.int_from_le(bytes)?;
                    self.push(Value::Int(value))?;
                }
                0x8b => {
                    let length = self.u32()? as usize;
                    let bytes = self.take(length)?;
                    let value = self.int_from_le(bytes)?;
                    self.push(Value::Int(value))?;
                }
                b'I' => {
                    let line = self.line()?;
                    let value = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        text => Value::Int(text.parse().map_err(|_| self.error(format!("bad INT `{text}`")))?),
                    };
                    self.push(value)?;
                }
                b'L' => {
                    let line = self.line()?;
                    let value =
                        line.trim_end_matches('L').parse().map_err(|_| self.error(format!("bad LONG `{line}`")))?;
                    self.push(Value::Int(value))?;
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Value::Float(value))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let value = line.parse().map_err(|_| self.error(format!("bad FLOAT `{line}`")))?;
                    self.push(Value::Float(value))?;
                }
                b'X' => {
                    let length = self.u32()? as usize;
                    let bytes = self.take(length)?;
                    let text = self.utf8(bytes)?;
                    self.push(text)?;
                }
                0x8c => {
                    let length = self.u8()? as usize;
                    let bytes = self.take(length)?;
                    let text = self.utf8(bytes)?;
                    self.push(text)?;
                }
                0x8d => {
                    let length = self.u64_len()?;
                    let bytes = self.take(length)?;
                    let text = self.utf8(bytes)?;
                    self.push(text)?;
                }
                b'V' => {
                    let line = self.line()?;
                    let text = self.utf8(line.as_bytes())?;
                    self.push(text)?;
                }
                b'T' => {
                    let length = self.u32()? as usize;
                    let bytes = self.take(length)?;
                    let text = self.latin1(bytes)?;
                    self.push(text)?;
                }
                b'U' => {
                    let length = self.u8()? as usize;
                    let bytes = self.take(length)?;
                    let text = self.latin1(bytes)?;
                    self.push(text)?;
                }
                b'S' => {
                    let line = self.line()?;
                    let text = self.utf8(line.trim_matches(|c| c == '\'' || c == '"').as_bytes())?;
                    self.push(text)?;
                }
                b'B' => {
                    let length = self.u32()? as usize;
                    let bytes = self.take(length)?;
                    let bytes = self.bytes(bytes)?;
                    self.push(bytes)?;
                }
                b'C' => {
                    let length = self.u8()? as usize;
                    let bytes = self.take(length)?;
                    let bytes = self.bytes(bytes)?;
                    self.push(bytes)?;
                }
                0x8e | 0x96 => {
                    let length = self.u64_len()?;
                    let bytes = self.take(length)?;
                    let bytes = self.bytes(bytes)?;
                    self.push(bytes)?;
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new())))?,
                b't' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                0x85..=0x87 => {
                    let count = (opcode - 0x84) as usize;
                    let mut items = Vec::with_capacity(count);
                    for _ in 0..count {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                b']' => self.push(Value::List(Rc::new(RefCell::new(Vec::new()))))?,
                b'l' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?;
                }
                b'}' => self.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))))?,
                b'd' => {
                    let items = self.pop_to_mark()?;
                    let dict = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                    self.set_items(&dict, items)?;
                    self.push(dict)?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?.clone();
                    self.append(&list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_to_mark()?;
                    let list = self.top()?.clone();
                    self.append(&list, items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?.clone();
                    self.set_items(&dict, vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    let dict = self.top()?.clone();
                    self.set_items(&dict, items)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let index = line.parse().map_err(|_| self.error(format!("bad PUT `{line}`")))?;
                    self.memo_put(index)?;
                }
                b'q' => {
                    let index = self.u8()? as u32;
                    self.memo_put(index)?;
                }
                b'r' => {
                    let index = self.u32()?;
                    self.memo_put(index)?;
                }
                0x94 => {
                    let index = self.memo.len() as u32;
                    self.memo_put(index)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let index = line.parse().map_err(|_| self.error(format!("bad GET `{line}`")))?;
                    let value = self.memo_get(index)?;
                    self.push(value)?;
                }
                b'h' => {
                    let index = self.u8()? as u32;
                    let value = self.memo_get(index)?;
                    self.push(value)?;
                }
                b'j' => {
                    let index = self.u32()?;
                    let value = self.memo_get(index)?;
                    self.push(value)?;
                }
                b'c' => {
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    let value = self.global(&module, &name)?;
                    self.push(value)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.error("STACK_GLOBAL needs two strings"));
                    };
                    let value = self.global(module, name)?;
                    self.push(value)?;
                }
                b'i' => {
                    // INST names its class inline; it is never a tensor or a container.
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    self.global(&module, &name)?;
                    return Err(self.error(format!("INST of `{module}.{name}` is not supported")));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    self.push(value)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    match class {
                        Value::Global(Global::OrderedDict) => {
                            let value = self.reduce(class, args)?;
                            self.push(value)?;
                        }
                        other => return Err(self.error(format!("NEWOBJ of a {}", other.kind()))),
                    }
                }
                b'b' => {
                    // BUILD sets an object's state. An OrderedDict's state is its `_metadata`
                    // (per-module version numbers); a tensor's is Python attributes. Neither
                    // changes the weights, so both are dropped.
                    let _state = self.pop()?;
                    let kind = self.top()?.kind();
                    if !matches!(kind, "dict" | "tensor") {
                        return Err(self.error(format!("BUILD on a {kind}")));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let value = self.persistent_load(pid)?;
                    self.push(value)?;
                }
                b'P' => return Err(self.error("text persistent ids (PERSID) are not used by PyTorch")),
                other => return Err(self.error(format!("unsupported pickle opcode 0x{other:02x}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Unpickled> {
        let mut position = 0;
        let path = Path::new("test.pth");
        unpickle(path, bytes, &mut position, &Budget::for_file(path, bytes.len()))
    }

    #[test]
    fn refuses_os_system_before_calling_anything() {
        // cos\nsystem\n(S'touch /tmp/pwned'\ntR.  — the classic payload, protocol 0.
        let payload = b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.";
        let error = run(payload).unwrap_err();
        assert!(
            matches!(&error, WeightsError::ForbiddenGlobal { module, name, .. } if module == "os" && name == "system"),
            "{error}"
        );
        assert!(error.to_string().contains("`os.system`"), "{error}");
    }

    #[test]
    fn refuses_stack_global_of_builtins_eval() {
        // protocol 4: SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL
        let mut payload = vec![0x80, 4, 0x8c, 8];
        payload.extend(b"builtins");
        payload.extend([0x8c, 4]);
        payload.extend(b"eval");
        payload.extend([0x93, b'.']);
        assert!(matches!(run(&payload), Err(WeightsError::ForbiddenGlobal { .. })));
    }

    #[test]
    fn plain_containers_and_big_integers() {
        // {'a': [1, 2.5, True], 'b': (None,)} plus LONG1 of the 10-byte legacy magic number.
        let mut payload = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b']', b'(', b'K', 1, b'G'];
        payload.extend(2.5f64.to_be_bytes());
        payload.extend([0x88, b'e', b'X', 1, 0, 0, 0, b'b', b'N', 0x85, b'u', b'.']);
        let unpickled = run(&payload).unwrap();
        let Value::Dict(entries) = &unpickled.root else { panic!("not a dict") };
        let entries = entries.borrow();
        assert_eq!(entries.len(), 2);
        assert!(matches!(&entries[0].1, Value::List(items) if items.borrow().len() == 3));

        let magic = [0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'];
        assert!(matches!(run(&magic).unwrap().root, Value::Int(0x1950a86a20f9469cfc6c)));
    }

    #[test]
    fn truncated_pickle_is_reported_as_truncated() {
        assert!(matches!(run(&[0x80, 2, b'X', 9, 0, 0, 0, b'a']), Err(WeightsError::Truncated { .. })));
    }
}
