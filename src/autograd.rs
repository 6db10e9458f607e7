//! Reverse-mode automatic differentiation over a tape.
//!
//! Every op whose output needs a gradient appends a node to the tape: the
//! output's id, its inputs' ids, and a closure (the op's backward rule,
//! written beside its forward in `ops/`) that maps the output gradient `dy`
//! to the input gradients. Nodes are appended in execution order, so walking
//! the tape backwards visits every node after all of its consumers: no
//! topological sort is needed (define-by-run, as in PyTorch and micrograd).
//!
//! [`Tensor::backward`] walks the tape from the end, runs the rule of each
//! node whose output has received a gradient, and accumulates (`+=`) input
//! gradients, since a tensor may feed several ops. The nodes it runs are
//! consumed; nodes the loss does not reach stay on the tape, so a generator's
//! forward pass can be reused by a second loss (the GAN pattern).
//!
//! The tape is thread-local, like PyTorch's grad mode; the engine uses one thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};

/// A backward rule: from `dy` (shaped like the output) to one optional gradient per input.
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

/// The backward rule of an op with several outputs (a fused kernel): it receives one optional
/// gradient per output (None where the loss does not depend on that output).
pub type MultiBackwardFn = Box<dyn FnOnce(&[Option<Tensor>]) -> Result<Vec<Option<Tensor>>>>;

enum Rule {
    Single(BackwardFn),
    Multi(MultiBackwardFn),
}

/// One recorded op.
pub(crate) struct Node {
    outputs: Vec<TensorId>,
    /// Each input's id and whether it wants a gradient.
    inputs: Vec<(TensorId, bool)>,
    backward: Rule,
    /// Where in `ops/` the node was recorded (for [`tape`]).
    origin: &'static Location<'static>,
}

/// What [`tape`] shows of one recorded op: which tensors it produced from which, and the line
/// of `src/ops/` that recorded it (its forward, beside which its backward rule is written).
#[derive(Clone, Debug)]
pub struct TapeEntry {
    /// Ids of the op's outputs.
    pub outputs: Vec<TensorId>,
    /// Ids of its inputs, each with whether it wants a gradient.
    pub inputs: Vec<(TensorId, bool)>,
    /// `file:line` of the code that recorded the node.
    pub origin: String,
}

impl std::fmt::Display for TapeEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(", ");
        write!(
            f,
            "{} <- ({})  recorded at {}",
            ids(&mut self.outputs.iter().map(|t| t.to_string())),
            ids(&mut self
                .inputs
                .iter()
                .map(|(t, wants)| format!("{t}{}", if *wants { "" } else { " (no grad)" }))),
            self.origin
        )
    }
}

thread_local! {
    static TAPE: RefCell<Vec<Node>> = const { RefCell::new(Vec::new()) };
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops currently record onto the tape.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Guard returned by [`no_grad`]; recording resumes (if it was on) when it drops.
#[must_use = "recording resumes when the guard is dropped"]
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Stops recording until the guard drops: for evaluation, sampling and
/// optimizer updates (as `torch.no_grad()`).
pub fn no_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

/// Number of nodes on the tape (for tests and leak checks).
pub fn tape_len() -> usize {
    TAPE.with(|t| t.borrow().len())
}

/// The nodes on the tape, oldest first (what [`Tensor::backward`] will walk in reverse).
pub fn tape() -> Vec<TapeEntry> {
    TAPE.with(|t| {
        t.borrow()
            .iter()
            .map(|n| TapeEntry {
                outputs: n.outputs.clone(),
                inputs: n.inputs.clone(),
                origin: format!("{}:{}", n.origin.file(), n.origin.line()),
            })
            .collect()
    })
}

/// Drops every recorded node (and the tensors they saved).
pub fn clear_tape() {
    let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    drop(nodes);
}

/// Records `output = op(inputs)` with its backward rule, if any input requires grad
/// and recording is on. Called by every differentiable op; the caller's location is kept
/// (`#[track_caller]`) so that [`tape`] can say which op recorded each node.
#[track_caller]
pub(crate) fn record(output: &Tensor, inputs: &[&Tensor], backward: BackwardFn) {
    if !output.requires_grad() {
        return;
    }
    let node = Node {
        outputs: vec![output.id()],
        inputs: inputs.iter().map(|t| (t.id(), t.requires_grad())).collect(),
        backward: Rule::Single(backward),
        origin: Location::caller(),
    };
    TAPE.with(|t| t.borrow_mut().push(node));
}

/// Records an op with several outputs (all requiring grad together) and one backward rule.
#[track_caller]
pub(crate) fn record_multi(outputs: &[&Tensor], inputs: &[&Tensor], backward: MultiBackwardFn) {
    if !outputs.iter().all(|t| t.requires_grad()) {
        return;
    }
    let node = Node {
        outputs: outputs.iter().map(|t| t.id()).collect(),
        inputs: inputs.iter().map(|t| (t.id(), t.requires_grad())).collect(),
        backward: Rule::Multi(backward),
        origin: Location::caller(),
    };
    TAPE.with(|t| t.borrow_mut().push(node));
}

/// Gradients of a loss with respect to the leaf tensors that require grad
/// (the parameters), keyed by tensor id. Each gradient has its tensor's shape.
#[derive(Default, Debug)]
pub struct Gradients {
    map: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// The gradient of `t`, if the loss depends on it.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }

    /// Number of tensors with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no tensor received a gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Tensor {
    /// Backpropagates from this scalar loss: returns d(loss)/d(t) for every leaf
    /// tensor `t` that requires grad and that the loss depends on.
    ///
    /// Errors: [`Error::Invalid`] if the tensor is not a scalar (one element) or
    /// does not depend on anything that requires grad; errors of the backward kernels.
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::Invalid(format!(
                "backward: the loss must be a scalar, got shape {}",
                self.shape()
            )));
        }
        if !self.requires_grad() {
            return Err(Error::Invalid(
                "backward: the loss does not depend on any tensor that requires grad \
                 (was it computed under no_grad or from detached tensors?)"
                    .into(),
            ));
        }
        let _no_grad = no_grad();
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(self.id(), Tensor::full(self.gpu(), self.shape(), 1.0)?);
        let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
        let mut unreached = Vec::new();
        for node in nodes.into_iter().rev() {
            let output_grads: Vec<Option<Tensor>> =
                node.outputs.iter().map(|id| grads.remove(id)).collect();
            if output_grads.iter().all(Option::is_none) {
                unreached.push(node);
                continue;
            }
            let input_grads = match node.backward {
                Rule::Single(rule) => rule(output_grads[0].as_ref().expect("one output, reached"))?,
                Rule::Multi(rule) => rule(&output_grads)?,
            };
            debug_assert_eq!(input_grads.len(), node.inputs.len());
            for ((id, wants), dx) in node.inputs.iter().zip(input_grads) {
                let (true, Some(dx)) = (*wants, dx) else {
                    continue;
                };
                let sum = match grads.remove(id) {
                    Some(previous) => previous.add(&dx)?,
                    None => dx,
                };
                grads.insert(*id, sum);
            }
        }
        unreached.reverse();
        TAPE.with(|t| {
            let mut tape = t.borrow_mut();
            unreached.append(&mut tape);
            *tape = unreached;
        });
        Ok(Gradients { map: grads })
    }
}
