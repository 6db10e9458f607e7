//! The texture-operand matmul path (`shaders/matmul_texture.wgsl`), for adapters with 8-lane
//! subgroups: the operands are copied into read-only `rgba32float` storage textures, which
//! lavapipe reads in vector gathers where a storage buffer costs a per-lane loop (benches/NOTES.md).
//!
//! This file is matmul v5 ([`crate::ops::MatmulVersion::V5`]): its adapter check
//! ([`MatmulPath`], kept for the older path switch), the operand textures
//! (one per shape and operand, reused by every product of that shape, kept per GPU context in
//! [`Gpu::extension`]) and their two layouts (`TexLayout`). `ops/matmul.rs` calls
//! `dispatch` and falls back to the generic kernel when it declines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::gpu::{Capabilities, Gpu, Storage, Texture};
use crate::ops::elementwise::Activation;
use crate::ops::kernels::Kernel;
use crate::ops::matmul::{Layout, TexMatmulParams};
use crate::tensor::Tensor;

/// The two matmul paths of before the numbered versions: `Generic` is v2, `Texture` v5
/// ([`crate::ops::MatmulVersion`]); [`Gpu::set_matmul_path`] forces one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPath {
    /// `shaders/matmul.wgsl`: storage buffers, any adapter, any size.
    Generic,
    /// `shaders/matmul_texture.wgsl`: operands copied into rgba32float textures, 8-lane subgroups;
    /// used for shapes whose stored operands have a contiguous dimension divisible by 4.
    Texture,
}

/// Environment variable that forces a matmul version (`DEEPGEN_MATMUL=v3`; `generic` is v2,
/// `texture` v5, `auto` the autotuner).
pub const MATMUL_ENV: &str = "DEEPGEN_MATMUL";

impl MatmulPath {
    /// Why an adapter with `caps` cannot run this path, or None if it can.
    pub fn unsupported_reason(self, caps: &Capabilities) -> Option<String> {
        if self == MatmulPath::Generic {
            return None;
        }
        // The kernel's tiling assumes subgroups of exactly 8 lanes; it reads its operands
        // from read-only rgba32float storage textures.
        if !caps.subgroups {
            Some("the adapter has no subgroup operations".into())
        } else if (caps.subgroup_min_size, caps.subgroup_max_size) != (8, 8) {
            Some(format!(
                "it needs subgroups of exactly 8 lanes; this adapter runs {} to {}",
                caps.subgroup_min_size, caps.subgroup_max_size
            ))
        } else if !caps.rgba32float_storage_read {
            Some("the adapter cannot bind rgba32float read-only storage textures".into())
        } else {
            None
        }
    }
}

/// Texels of padding after each matrix row in [`TexLayout::Rows`]: 64 bytes, so that a row
/// pitch that is a multiple of 4 KiB (e.g. 1024 floats) does not map every row of a column
/// strip to the same cache set. At 1024^3 this took `matmul_nt` from 28 to 59 GFLOP/s on
/// lavapipe (benches/NOTES.md).
pub(crate) const ROW_PAD_TEXELS: usize = 4;

/// How a matrix sits in an rgba32float operand texture of `matmul_texture.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TexLayout {
    /// Texel t holds floats 4t..4t+3 of the row-major matrix, 2^shift texels per texture row:
    /// any shape fits, at the cost of a mask and a shift per load.
    Flat {
        /// log2 of the texture's width in texels.
        shift: u32,
    },
    /// Matrix row r is texture row r (texels 0..cols/4, then [`ROW_PAD_TEXELS`] of padding):
    /// a texel's coordinates are (column / 4, row) with no arithmetic.
    Rows,
}

/// A matrix copied into a matmul operand texture, and its layout.
struct OperandTexture {
    texture: Rc<Texture>,
    layout: TexLayout,
}

/// The texture path's state in one GPU context (kept in [`Gpu::extension`]).
#[derive(Default)]
struct TextureMatmul {
    /// Operand textures by (width, height, operand slot), reused by every matmul of that size.
    textures: RefCell<HashMap<(u32, u32, u8), Rc<Texture>>>,
}

impl Gpu {
    /// The older two-path view of the matmul choice: `Texture` where v5 is forced, or where
    /// nothing is forced and the adapter can run v5 (the autotuner may still pick another
    /// version per shape); `Generic` otherwise.
    pub fn matmul_path(&self) -> MatmulPath {
        use crate::ops::MatmulVersion;
        match self.forced_matmul_version() {
            Some(MatmulVersion::V5) => MatmulPath::Texture,
            Some(_) => MatmulPath::Generic,
            None if MatmulPath::Texture
                .unsupported_reason(self.capabilities())
                .is_none() =>
            {
                MatmulPath::Texture
            }
            None => MatmulPath::Generic,
        }
    }

    /// Forces v2 (`Generic`) or v5 (`Texture`) for every product (see
    /// [`Gpu::force_matmul_version`]). Returns false, changing nothing, if the adapter cannot
    /// run `path` ([`MatmulPath::unsupported_reason`] says why).
    pub fn set_matmul_path(&self, path: MatmulPath) -> bool {
        use crate::ops::MatmulVersion;
        let version = match path {
            MatmulPath::Generic => MatmulVersion::V2,
            MatmulPath::Texture => MatmulVersion::V5,
        };
        self.force_matmul_version(Some(version)).is_ok()
    }
}

/// The narrowest flat-texture width (log2 of texels, at least 64 texels) whose height
/// stays within the adapter's limit for `numel` floats; None if none does.
fn flat_shift(gpu: &Gpu, numel: usize) -> Option<u32> {
    let texels = numel.div_ceil(4) as u64;
    let max = gpu.capabilities().max_texture_dimension_2d as u64;
    (6..=max.ilog2()).find(|&s| texels.div_ceil(1 << s) <= max)
}

/// Copies the row-major `rows` x `cols` matrix in `src` (cols divisible by 4) into the
/// texture of operand `slot` for that shape, in stream order, and returns it. The texture
/// is reused by every later matmul of the same shape: the copy for the next one is ordered
/// after this one's reads.
///
/// The layout is [`TexLayout::Rows`] when one copy can write it (`cols` a multiple of 64,
/// since a copy's `bytes_per_row` must be a multiple of 256) and the rows fit the texture
/// height limit; otherwise [`TexLayout::Flat`] with 2^`shift` texels per texture row.
fn operand_texture(
    gpu: &Gpu,
    src: &Storage,
    (rows, cols): (usize, usize),
    slot: u8,
    shift: u32,
) -> OperandTexture {
    debug_assert!(cols.is_multiple_of(4) && rows * cols > 0);
    let max = gpu.capabilities().max_texture_dimension_2d as usize;
    let row_texels = (cols / 4) as u32;
    let layout = if cols.is_multiple_of(64) && rows <= max && cols / 4 + ROW_PAD_TEXELS <= max {
        TexLayout::Rows
    } else {
        TexLayout::Flat { shift }
    };
    let texels = (rows * cols / 4) as u32;
    let (width, height) = match layout {
        TexLayout::Rows => (row_texels + ROW_PAD_TEXELS as u32, rows as u32),
        TexLayout::Flat { shift } => (1u32 << shift, texels.div_ceil(1 << shift)),
    };
    let texture = gpu
        .extension::<TextureMatmul>()
        .textures
        .borrow_mut()
        .entry((width, height, slot))
        .or_insert_with(|| {
            Rc::new(gpu.create_texture(&wgpu::TextureDescriptor {
                label: Some("deepgen matmul operand"),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            }))
        })
        .clone();
    // Rows of `bytes_per_row` bytes of the buffer, from `offset`, into texture rows from y.
    let copy = |encoder: &mut wgpu::CommandEncoder,
                (offset, bytes_per_row): (u64, u32),
                y: u32,
                extent: (u32, u32)| {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: src.buffer(),
                layout: wgpu::TexelCopyBufferLayout {
                    offset,
                    bytes_per_row: Some(bytes_per_row),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: texture.texture(),
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: extent.0,
                height: extent.1,
                depth_or_array_layers: 1,
            },
        );
    };
    gpu.record(|encoder| match layout {
        TexLayout::Rows => copy(encoder, (0, row_texels * 16), 0, (row_texels, height)),
        TexLayout::Flat { .. } => {
            let full_rows = texels / width;
            let rest = texels % width;
            if full_rows > 0 {
                copy(encoder, (0, width * 16), 0, (width, full_rows));
            }
            if rest > 0 {
                let offset = full_rows as u64 * width as u64 * 16;
                copy(encoder, (offset, width * 16), full_rows, (rest, 1));
            }
        }
    });
    OperandTexture { texture, layout }
}

/// Whether v5 can take the product (`m x n`, contracted over `k`) of `a` and `b`: each stored
/// operand's contiguous dimension divisible by 4, operands within the texture size limit, and
/// the adapter able to run it at all.
pub(crate) fn accepts(
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
) -> bool {
    let gpu = a.gpu();
    let aligned = match layout {
        Layout::NN => k % 4 == 0 && n % 4 == 0,
        Layout::NT => k % 4 == 0,
        Layout::TN => m % 4 == 0 && n % 4 == 0,
    };
    aligned
        && m * n * k > 0
        && MatmulPath::Texture
            .unsupported_reason(gpu.capabilities())
            .is_none()
        && flat_shift(gpu, a.numel().max(b.numel())).is_some()
}

/// Records `out = act(op(a) op(b) + bias)` (`m x n`, contracted over `k`) on the texture path
/// when [`accepts`] says it can; returns false, having recorded nothing, otherwise.
pub(crate) fn dispatch(
    a: &Tensor,
    b: &Tensor,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
    bias: Option<&Tensor>,
    act: Activation,
    out: &Storage,
) -> bool {
    let gpu = a.gpu();
    if !accepts(a, b, layout, (m, k, n)) {
        return false;
    }
    let Some(shift) = flat_shift(gpu, a.numel().max(b.numel())) else {
        return false;
    };
    // Rows of C per workgroup: the lane block of each kernel (see the shader header).
    let (kernel, rows) = match layout {
        Layout::NN => (Kernel::MatmulTextureNN, 5),
        Layout::NT => (Kernel::MatmulTextureNT, 6),
        Layout::TN => (Kernel::MatmulTextureTN, 8),
    };
    let stored = |t: &Tensor| (t.dims()[0], t.dims()[1]);
    let ta = operand_texture(gpu, a.storage(), stored(a), 0, shift);
    let tb = operand_texture(gpu, b.storage(), stored(b), 1, shift);
    // Each operand's addressing and the epilogue are compiled in (a pipeline per combination).
    let rows_layout = |t: &OperandTexture| f64::from(u8::from(t.layout == TexLayout::Rows));
    let constants = [
        ("A_ROWS", rows_layout(&ta)),
        ("B_ROWS", rows_layout(&tb)),
        ("HAS_BIAS", f64::from(u8::from(bias.is_some()))),
        ("ACT", f64::from(act.code())),
    ];
    let (alpha, beta) = act.params();
    let params = TexMatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        shift,
        alpha,
        beta,
        _pad: [0; 2],
    };
    let groups = [(m as u32).div_ceil(rows), (n as u32).div_ceil(32), 1];
    // Without a bias the binding is unused; any buffer fills it.
    kernel.dispatch_with(
        gpu,
        &constants,
        &[&ta.texture, &tb.texture],
        &[bias.map_or(a.storage(), |t| t.storage()), out],
        &params,
        groups,
    );
    true
}
