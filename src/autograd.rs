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
//! Higher order: [`grad`] with `create_graph` (PyTorch's `torch.autograd.grad(outputs,
//! inputs, create_graph=True)`) runs the same walk with recording *on*, so every tensor a rule
//! computes is itself an op on the tape, and the gradients it returns can be differentiated
//! again (a gradient penalty, a Hessian-vector product). The rules are `Fn`, called by
//! reference: the walked nodes stay on the tape, because the second backward must pass through
//! the forward activations the rules saved. Each rule either computes in recorded ops when
//! recording is on (matmul, linear, conv2d, the activations, sums, the element-wise
//! arithmetic) or refuses with an error (the fused loss and VAE kernels, batch norm), so a
//! second derivative is never silently missing. The first-order path, [`Tensor::backward`],
//! runs with recording off and dispatches exactly the kernels it did before.
//!
//! The tape is thread-local, like PyTorch's grad mode; the engine uses one thread.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::panic::Location;

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};

/// A backward rule: from `dy` (shaped like the output) and `wanted` (one flag per input: whether
/// its gradient is needed) to one optional gradient per input. A rule may skip the work for an
/// input that is not wanted (returning None); it may be called more than once (with recording
/// on, by [`grad`] with `create_graph`, its results are recorded ops).
pub type BackwardFn = Box<dyn Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>>>;

/// The backward rule of an op with several outputs (a fused kernel): it receives one optional
/// gradient per output (None where the loss does not depend on that output) and the flags of
/// [`BackwardFn`].
pub type MultiBackwardFn = Box<dyn Fn(&[Option<Tensor>], &[bool]) -> Result<Vec<Option<Tensor>>>>;

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

/// Refuses, inside a backward rule, to run while recording: for the rules whose kernels have no
/// backward of their own (the fused losses, the VAE kernels, batch norm). [`grad`] with
/// `create_graph` reaching such an op returns this error instead of a gradient that would
/// silently lack its second-order terms.
///
/// Errors: [`Error::Invalid`] naming `op` when recording is on.
pub(crate) fn first_order_only(op: &str) -> Result<()> {
    if is_grad_enabled() {
        return Err(Error::Invalid(format!(
            "{op}: its backward is not differentiable (no second derivative); \
             grad(.., create_graph = true) cannot pass through it"
        )));
    }
    Ok(())
}

/// A point on the tape: the nodes recorded after it produce tensors newer than it. See
/// [`release_since`].
#[derive(Clone, Copy, Debug)]
pub struct TapeMark(TensorId);

/// Marks the tape now (nothing is recorded).
pub fn tape_mark() -> TapeMark {
    TapeMark(crate::tensor::next_tensor_id())
}

/// Drops the nodes recorded since `mark` that are still on the tape, with the tensors they
/// saved: what a loss's backward did not reach. A gradient penalty needs this: the critic's
/// forward at the interpolates is reached by the penalty only through its gradient, so the
/// loss's backward leaves that forward's nodes (and [`grad`]'s unreached ones) behind.
/// Nodes recorded before the mark are kept.
pub fn release_since(mark: TapeMark) {
    let dropped: Vec<Node> = TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        let (old, new): (Vec<Node>, Vec<Node>) = std::mem::take(&mut *tape)
            .into_iter()
            .partition(|n| n.outputs.iter().any(|id| *id < mark.0));
        *tape = old;
        new
    });
    drop(dropped);
}

/// Which gradients a walk computes.
enum Wanted<'a> {
    /// Every tensor that requires grad (the leaves' gradients are kept): [`Tensor::backward`].
    All,
    /// Only the inputs whose value depends on one of these tensors: [`grad`].
    Reaching(&'a HashSet<TensorId>),
}

/// The reverse walk shared by [`Tensor::backward`] and [`grad`]: seeds `seeds` (tensor id, dy),
/// walks `nodes` from the end, calls each reached node's rule for the inputs `wanted` and
/// accumulates their gradients. Keeps the gradients of the ids in `keep` when their node runs
/// (the requested inputs of [`grad`] may be intermediate tensors). Returns the gradient map
/// and, per node, whether it was reached (its rule ran).
fn walk(
    nodes: &[Node],
    seeds: Vec<(TensorId, Tensor)>,
    wanted: Wanted,
    keep: &HashSet<TensorId>,
) -> Result<(HashMap<TensorId, Tensor>, Vec<bool>)> {
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    for (id, g) in seeds {
        let sum = match grads.remove(&id) {
            Some(previous) => previous.add(&g)?,
            None => g,
        };
        grads.insert(id, sum);
    }
    let mut reached = vec![false; nodes.len()];
    for (index, node) in nodes.iter().enumerate().rev() {
        if !node.outputs.iter().any(|id| grads.contains_key(id)) {
            continue;
        }
        let flags: Vec<bool> = node
            .inputs
            .iter()
            .map(|(id, wants)| {
                *wants
                    && match wanted {
                        Wanted::All => true,
                        Wanted::Reaching(set) => set.contains(id),
                    }
            })
            .collect();
        if !flags.contains(&true) {
            continue;
        }
        reached[index] = true;
        let output_grads: Vec<Option<Tensor>> = node
            .outputs
            .iter()
            .map(|id| {
                if keep.contains(id) {
                    grads.get(id).cloned()
                } else {
                    grads.remove(id)
                }
            })
            .collect();
        let input_grads = match &node.backward {
            Rule::Single(rule) => rule(
                output_grads[0].as_ref().expect("one output, reached"),
                &flags,
            )?,
            Rule::Multi(rule) => rule(&output_grads, &flags)?,
        };
        debug_assert_eq!(input_grads.len(), node.inputs.len());
        for (((id, _), wants), dx) in node.inputs.iter().zip(&flags).zip(input_grads) {
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
    Ok((grads, reached))
}

/// Puts back the nodes a consuming walk did not reach, before any recorded since.
fn restore_unreached(nodes: Vec<Node>, reached: &[bool]) {
    let mut unreached: Vec<Node> = nodes
        .into_iter()
        .zip(reached)
        .filter(|(_, r)| !**r)
        .map(|(n, _)| n)
        .collect();
    TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        unreached.append(&mut tape);
        *tape = unreached;
    });
}

impl Tensor {
    /// Backpropagates from this scalar loss: returns d(loss)/d(t) for every leaf
    /// tensor `t` that requires grad and that the loss depends on. First order: the rules run
    /// with recording off (the gradients are plain tensors) and the nodes they walk are consumed.
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
        let seed = Tensor::full(self.gpu(), self.shape(), 1.0)?;
        let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
        let result = walk(
            &nodes,
            vec![(self.id(), seed)],
            Wanted::All,
            &HashSet::new(),
        );
        let reached = match &result {
            Ok((_, reached)) => reached.clone(),
            Err(_) => vec![false; nodes.len()],
        };
        restore_unreached(nodes, &reached);
        Ok(Gradients { map: result?.0 })
    }
}

/// Gradients of `outputs` with respect to `inputs` (PyTorch's `torch.autograd.grad(outputs,
/// inputs, grad_outputs=ones, create_graph)`): one entry per input, d(sum of all elements of
/// all outputs)/d(input), shaped like the input, or None if the outputs do not depend on it.
/// Each output is seeded with ones, so a `(B, 1)` critic output gives the per-sample gradients
/// of a batch at once. Only the gradients on a path to `inputs` are computed. `inputs` may be
/// leaves or intermediate tensors.
///
/// With `create_graph` false this is [`Tensor::backward`] restricted to `inputs`: recording
/// off, the reached nodes consumed. With `create_graph` true the rules run with recording on:
/// the returned gradients require grad wherever they depend on a tensor that does, the nodes
/// walked stay on the tape (a later backward passes through them to the forward activations
/// they saved), and the nodes of the gradient computation are appended after them. Call
/// [`release_since`] when done, to drop what the final backward did not reach.
///
/// Errors: [`Error::Invalid`] if an output does not require grad, or if `create_graph` reaches
/// an op whose backward is not differentiable (the fused losses, the VAE kernels, batch norm); kernel errors.
pub fn grad(
    outputs: &[&Tensor],
    inputs: &[&Tensor],
    create_graph: bool,
) -> Result<Vec<Option<Tensor>>> {
    if let Some(o) = outputs.iter().find(|o| !o.requires_grad()) {
        return Err(Error::Invalid(format!(
            "grad: output {} of shape {} does not depend on any tensor that requires grad",
            o.id(),
            o.shape()
        )));
    }
    let requested: HashSet<TensorId> = inputs.iter().map(|t| t.id()).collect();
    let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    // The tensors whose value depends on a requested input: the inputs, then each node's
    // outputs if one of its inputs is in the set (the tape is in execution order).
    let mut reaching = requested.clone();
    for node in &nodes {
        if node.inputs.iter().any(|(id, _)| reaching.contains(id)) {
            reaching.extend(node.outputs.iter().copied());
        }
    }
    let previous = GRAD_ENABLED.with(|g| g.replace(create_graph));
    let result = (|| {
        let seeds = outputs
            .iter()
            .map(|o| Ok((o.id(), Tensor::full(o.gpu(), o.shape().clone(), 1.0)?)))
            .collect::<Result<Vec<_>>>()?;
        walk(&nodes, seeds, Wanted::Reaching(&reaching), &requested)
    })();
    GRAD_ENABLED.with(|g| g.set(previous));
    if create_graph {
        // Every node stays; the gradient computation's own nodes follow them.
        TAPE.with(|t| {
            let mut tape = t.borrow_mut();
            let mut all = nodes;
            all.append(&mut tape);
            *tape = all;
        });
    } else {
        let reached = match &result {
            Ok((_, reached)) => reached.clone(),
            Err(_) => vec![false; nodes.len()],
        };
        restore_unreached(nodes, &reached);
    }
    let (grads, _) = result?;
    Ok(inputs.iter().map(|t| grads.get(&t.id()).cloned()).collect())
}
