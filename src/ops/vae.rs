//! The VAE's sampling layer and its KL term (kernels in `shaders/vae.wgsl`).
//!
//! Kingma & Welling 2014, "Auto-Encoding Variational Bayes": the reparameterization
//! trick (sec. 2.4) writes the sample as a deterministic function of (mu, logvar)
//! and independent noise, so gradients reach the encoder; the KL divergence of a
//! diagonal Gaussian from N(0, I) has a closed form (appendix B).

use crate::error::{Error, Result};
use crate::gpu::grid_1d;
use crate::ops::kernels::{Kernel, WORKGROUP_1D};
use crate::tensor::Tensor;

/// Params of the element-wise kernels of `vae.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ElemParams {
    /// Number of elements.
    pub n: u32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 3],
}

fn check_pair(op: &'static str, mu: &Tensor, logvar: &Tensor) -> Result<()> {
    if mu.shape() != logvar.shape() || mu.dims().len() != 2 {
        return Err(Error::shape(
            op,
            format!(
                "mu and logvar must both be (batch_size, latent_dim), got {} and {}",
                mu.shape(),
                logvar.shape()
            ),
        ));
    }
    Ok(())
}

fn check_eps(op: &'static str, mu: &Tensor, eps: &Tensor) -> Result<()> {
    if eps.shape() != mu.shape() {
        return Err(Error::shape(
            op,
            format!("eps {} must match mu {}", eps.shape(), mu.shape()),
        ));
    }
    Ok(())
}

/// The reparameterization trick: `z = mu + exp(logvar / 2) * eps`.
///
/// Shapes: `mu`, `logvar`, `eps` and the result are all `(batch_size, latent_dim)`;
/// `eps` is N(0, I) noise, usually [`Tensor::randn`]. Gradients flow to `mu`
/// (`dz`) and `logvar` (`dz * eps * exp(logvar / 2) / 2`), not to `eps`.
///
/// Errors: [`Error::Shape`] if the three shapes differ or are not matrices.
pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
    check_pair("reparameterize", mu, logvar)?;
    check_eps("reparameterize", mu, eps)?;
    let gpu = mu.gpu();
    let n = mu.numel();
    let z = Tensor::alloc(gpu, "reparameterize", n)?;
    let params = ElemParams {
        n: n as u32,
        _pad: [0; 3],
    };
    let grid = grid_1d(n as u64, WORKGROUP_1D);
    Kernel::ReparameterizeForward.dispatch(
        gpu,
        &[mu.storage(), logvar.storage(), eps.storage(), &z],
        &params,
        grid,
    );
    let (slv, seps) = (logvar.clone(), eps.detach());
    let backward = Box::new(
        move |dz: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only("reparameterize")?;
            let gpu = dz.gpu();
            let dlogvar = Tensor::alloc(gpu, "reparameterize_backward", n)?;
            Kernel::ReparameterizeBackward.dispatch(
                gpu,
                &[slv.storage(), seps.storage(), dz.storage(), &dlogvar],
                &params,
                grid,
            );
            let dlogvar = Tensor::from_storage(gpu, dlogvar, slv.shape().clone());
            Ok(vec![Some(dz.clone()), Some(dlogvar), None])
        },
    );
    Ok(Tensor::from_op(
        gpu,
        z,
        mu.shape().clone(),
        &[mu, logvar, eps],
        backward,
    ))
}

/// KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, in nats:
/// `kl[b] = -1/2 * sum_d (1 + logvar - mu^2 - exp(logvar))`
/// (Kingma & Welling 2014, appendix B).
///
/// Shapes: `mu`, `logvar` `(batch_size, latent_dim)` -> `(batch_size,)`.
///
/// Errors: [`Error::Shape`] if the shapes differ or are not matrices.
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    check_pair("kl_divergence", mu, logvar)?;
    let gpu = mu.gpu();
    let (rows, dim) = (mu.dims()[0], mu.dims()[1]);
    let kl = Tensor::alloc(gpu, "kl_divergence", rows)?;
    let params = crate::ops::loss::RowParams {
        rows: rows as u32,
        dim: dim as u32,
        _pad: [0; 2],
    };
    Kernel::KlDivergenceForward.dispatch(
        gpu,
        &[mu.storage(), logvar.storage(), &kl],
        &params,
        grid_1d(rows as u64, WORKGROUP_1D),
    );
    let (smu, slv) = (mu.clone(), logvar.clone());
    let backward = Box::new(
        move |dkl: &Tensor, _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only("kl_divergence")?;
            let gpu = dkl.gpu();
            let n = rows * dim;
            let dmu = Tensor::alloc(gpu, "kl_divergence_backward", n)?;
            let dlogvar = Tensor::alloc(gpu, "kl_divergence_backward", n)?;
            Kernel::KlDivergenceBackward.dispatch(
                gpu,
                &[smu.storage(), slv.storage(), dkl.storage(), &dmu, &dlogvar],
                &params,
                grid_1d(n as u64, WORKGROUP_1D),
            );
            Ok(vec![
                Some(Tensor::from_storage(gpu, dmu, smu.shape().clone())),
                Some(Tensor::from_storage(gpu, dlogvar, smu.shape().clone())),
            ])
        },
    );
    Ok(Tensor::from_op(
        gpu,
        kl,
        [rows].into(),
        &[mu, logvar],
        backward,
    ))
}

/// The reparameterization trick and the KL term in one kernel: returns
/// `(z, kl)` = ([`reparameterize`]`(mu, logvar, eps)`, [`kl_divergence`]`(mu, logvar)`),
/// reading mu and logvar once, and a joint backward that produces dmu and dlogvar in one
/// pass (instead of two backward kernels and two gradient additions).
///
/// Shapes: `mu`, `logvar`, `eps` `(batch_size, latent_dim)` -> z `(batch_size, latent_dim)`,
/// kl `(batch_size,)` in nats per sample.
///
/// Errors: [`Error::Shape`] as for the two separate ops.
pub fn reparameterize_kl(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
    check_pair("reparameterize_kl", mu, logvar)?;
    check_eps("reparameterize_kl", mu, eps)?;
    let gpu = mu.gpu();
    let (rows, dim) = (mu.dims()[0], mu.dims()[1]);
    let z = Tensor::alloc(gpu, "reparameterize_kl", rows * dim)?;
    let kl = Tensor::alloc(gpu, "reparameterize_kl", rows)?;
    let params = crate::ops::loss::RowParams {
        rows: rows as u32,
        dim: dim as u32,
        _pad: [0; 2],
    };
    Kernel::VaeSampleForward.dispatch(
        gpu,
        &[mu.storage(), logvar.storage(), eps.storage(), &z, &kl],
        &params,
        grid_1d(rows as u64, WORKGROUP_1D),
    );
    let z = Tensor::from_storage(gpu, z, mu.shape().clone());
    let kl = Tensor::from_storage(gpu, kl, [rows].into());
    let requires_grad =
        crate::autograd::is_grad_enabled() && (mu.requires_grad() || logvar.requires_grad());
    if !requires_grad {
        return Ok((z, kl));
    }
    let (z, kl) = (z.requires_grad_(), kl.requires_grad_());
    let (smu, slv, seps) = (mu.clone(), logvar.clone(), eps.detach());
    let backward = Box::new(
        move |grads: &[Option<Tensor>], _: &[bool]| -> Result<Vec<Option<Tensor>>> {
            crate::autograd::first_order_only("reparameterize_kl")?;
            let gpu = smu.gpu();
            let n = rows * dim;
            // A missing gradient is zero.
            let dz = match &grads[0] {
                Some(g) => g.clone(),
                None => Tensor::zeros(gpu, [rows, dim])?,
            };
            let dkl = match &grads[1] {
                Some(g) => g.clone(),
                None => Tensor::zeros(gpu, [rows])?,
            };
            let dmu = Tensor::alloc(gpu, "reparameterize_kl_backward", n)?;
            let dlogvar = Tensor::alloc(gpu, "reparameterize_kl_backward", n)?;
            Kernel::VaeSampleBackward.dispatch(
                gpu,
                &[
                    smu.storage(),
                    slv.storage(),
                    seps.storage(),
                    dz.storage(),
                    dkl.storage(),
                    &dmu,
                    &dlogvar,
                ],
                &params,
                grid_1d(n as u64, WORKGROUP_1D),
            );
            Ok(vec![
                Some(Tensor::from_storage(gpu, dmu, smu.shape().clone())),
                Some(Tensor::from_storage(gpu, dlogvar, smu.shape().clone())),
                None,
            ])
        },
    );
    crate::autograd::record_multi(&[&z, &kl], &[mu, logvar, eps], backward);
    Ok((z, kl))
}
