//! The page in a real browser (issue 16): web/build.sh builds the engine for
//! wasm32-unknown-unknown; this test serves web/www on 127.0.0.1, drives headless Chromium on
//! SwiftShader's WebGPU through chromedriver (WebDriver, with the fantoccini crate), and checks
//! that the page
//! 1. runs one fixed VAE step (same weights, batch and noise eps) with the same loss and
//!    gradients as the native engine,
//! 2. loads a natively saved model.safetensors by URL and decodes as the native engine does,
//! 3. trains: the loss falls by more than half in [`STEPS`] steps, the sample grid is not
//!    blank, and moving a slider of the latent explorer changes the decoded image,
//! 4. trains the 2-D latent VAE for [`PLANE_STEPS`] steps: its plane of decodes is not blank
//!    and a click on it decodes the clicked point,
//!
//! and saves screenshots (target/browser/). It prints the figures (worst differences, steps
//! per second in the page and natively, run time).
//!
//! A missing browser, driver or wasm toolchain FAILS this test (it never skips): install
//! `chromium chromium-driver` (apt), `rustup target add wasm32-unknown-unknown` and the
//! wasm-bindgen CLI of Cargo.lock's version (.ci/run does all three). `DEEPGEN_CHROMIUM` and
//! `DEEPGEN_CHROMEDRIVER` name other binaries.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deepgen::data::Dataset;
use deepgen::models::{Generative, MlpConfig, Model, ModelKind, Vae, VariationalModel};
use deepgen::nn::Module;
use deepgen::{Tensor, checkpoint, no_grad};
use fantoccini::{Client, ClientBuilder};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};

/// Training steps the page takes (batch 32).
const STEPS: u64 = 200;
/// Training steps of the 2-D latent VAE before its plane is clicked.
const PLANE_STEPS: u64 = 40;
/// Images in the fixed step's batch.
const FIXED_BATCH: usize = 32;

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary named by `env` or found on the PATH under one of `names`; panics with what to
/// install otherwise (the test must not skip).
fn binary(env: &str, names: &[&str], install: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "tests/browser.rs: none of {names:?} is on the PATH (nor ${env} set): {install}. \
         The browser test fails rather than skips without it."
    );
}

/// Runs web/build.sh (the wasm build and wasm-bindgen); panics with its output on failure.
fn build_page() {
    let out = Command::new("bash")
        .arg(root().join("web/build.sh"))
        .output()
        .expect("run web/build.sh");
    assert!(
        out.status.success(),
        "web/build.sh failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `www` and, under `/fixtures/`, `fixtures` on 127.0.0.1 (a free port, returned) from
/// a background thread, for as long as the process runs.
fn serve(www: PathBuf, fixtures: PathBuf) -> u16 {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let url = request.url().split('?').next().unwrap_or("/").to_string();
            let (dir, rel) = match url.strip_prefix("/fixtures/") {
                Some(rel) => (&fixtures, rel.to_string()),
                None => (&www, url.trim_start_matches('/').to_string()),
            };
            let rel = if rel.is_empty() {
                "index.html".into()
            } else {
                rel
            };
            let path = dir.join(&rel);
            let response = if rel.split('/').any(|c| c == "..") || !path.is_file() {
                tiny_http::Response::from_string("not found")
                    .with_status_code(404)
                    .boxed()
            } else {
                let mime = match path.extension().and_then(|e| e.to_str()) {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js") => "text/javascript",
                    Some("wasm") => "application/wasm",
                    _ => "application/octet-stream",
                };
                let header = tiny_http::Header::from_bytes("Content-Type", mime).unwrap();
                let body = std::fs::read(&path).expect("read a served file");
                tiny_http::Response::from_data(body)
                    .with_header(header)
                    .boxed()
            };
            let _ = request.respond(response);
        }
    });
    port
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts chromedriver on a free port and waits until it listens.
fn start_driver(driver: &Path) -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
    let child = Killed(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

/// Evaluates `expr` (JavaScript; may be a promise) in the page and returns its value, polling
/// for the promise's end (WebDriver's own script timeout is too short for training). Panics
/// with the page's error if it rejects or if `timeout` passes.
async fn eval(client: &Client, expr: &str, args: Vec<Value>, timeout: Duration) -> Value {
    let start = format!(
        "window.__done = null; const args = arguments; \
         Promise.resolve().then(() => {expr}).then(\
           v => window.__done = {{ ok: v === undefined ? null : v }}, \
           e => window.__done = {{ err: String(e && e.stack ? e.stack : e) }});"
    );
    client.execute(&start, args).await.expect("start a script");
    let t0 = Instant::now();
    loop {
        let done = client
            .execute("return window.__done;", vec![])
            .await
            .expect("poll a script");
        if let Some(err) = done.get("err") {
            panic!(
                "the page failed on `{expr}`: {}",
                err.as_str().unwrap_or("")
            );
        }
        if let Some(ok) = done.get("ok") {
            return ok.clone();
        }
        assert!(
            t0.elapsed() < timeout,
            "`{expr}` did not finish within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `cond` (a JavaScript expression) is true in the page, failing on the page's
/// error or after `timeout`.
async fn wait_for(client: &Client, cond: &str, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let v = client
            .execute(&format!("return [Boolean({cond}), app.error];"), vec![])
            .await
            .expect("poll the page");
        if let Some(err) = v[1].as_str() {
            panic!("the page reports an error while waiting for `{cond}`: {err}");
        }
        if v[0].as_bool() == Some(true) {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "`{cond}` did not become true within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The values of a JSON array of numbers.
fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// A page's typed array read back through JSON: `Array.from(expr)`.
async fn page_floats(client: &Client, expr: &str) -> Vec<f32> {
    let v = client
        .execute(&format!("return Array.from({expr});"), vec![])
        .await
        .expect("read an array");
    floats(&v)
}

/// Largest |a - b| / max(|b|) over two equally long slices.
fn worst_relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / scale
}

/// Mean |a - b|.
fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len().max(1) as f64
}

/// Standard deviation of `v`.
fn std_dev(v: &[f32]) -> f64 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Native steps per second of the same VAE step (batch 32), over `steps` steps after 5 of
/// warm-up, on this machine's native adapter (lavapipe here).
fn native_steps_per_second(data: &Dataset, steps: usize) -> f64 {
    let gpu = common::gpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let model = Vae::new(&gpu, MlpConfig::default(), &mut rng).unwrap();
    let mut opt =
        deepgen::train::Optimizer::new(deepgen::optim::Adam::new(1e-3), model.parameters());
    let mut run = |n: usize, offset: usize| {
        for i in 0..n {
            let idx: Vec<usize> = (0..32)
                .map(|k| (offset + i * 32 + k) % data.len())
                .collect();
            let x = Tensor::from_slice(&gpu, &data.gather(&idx), [32, 784]).unwrap();
            deepgen::train::vae::vae_step(&model, &mut opt, &x, 1.0).unwrap();
            gpu.flush();
        }
        gpu.synchronize().unwrap();
    };
    run(5, 0);
    let t0 = Instant::now();
    run(steps, 5 * 32);
    steps as f64 / t0.elapsed().as_secs_f64()
}

#[test]
fn page_trains_explores_and_matches_native() {
    let t_start = Instant::now();
    let chromium = binary(
        "DEEPGEN_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium",
    );
    let driver = binary(
        "DEEPGEN_CHROMEDRIVER",
        &["chromedriver"],
        "apt-get install chromium-driver",
    );
    build_page();
    let t_built = Instant::now();

    // Native side: a seeded VAE saved as a checkpoint the page fetches, a batch and its noise.
    let fixtures = tempfile::tempdir().unwrap();
    let gpu = common::gpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let model = Vae::new(&gpu, MlpConfig::default(), &mut rng).unwrap();
    checkpoint::save(
        &fixtures.path().join("vae.safetensors"),
        ModelKind::Vae,
        &model.metadata(),
        &model.named_parameters(),
    )
    .unwrap();
    let mnist = root().join("data/mnist");
    let data = Dataset::from_idx(
        &mnist.join("t10k-images-idx3-ubyte.gz"),
        &mnist.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let idx: Vec<usize> = (0..FIXED_BATCH).map(|i| i * 7 + 3).collect();
    let x_host = data.gather(&idx);
    let d = model.latent_dim();
    let eps_host: Vec<f32> = (0..FIXED_BATCH * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let (native_loss, native_grads) = {
        let x = Tensor::from_slice(&gpu, &x_host, [FIXED_BATCH, 784]).unwrap();
        let eps = Tensor::from_slice(&gpu, &eps_host, [FIXED_BATCH, d]).unwrap();
        let loss = model.loss_with_eps(&x, Some(&eps), 1.0).unwrap();
        let grads = loss.loss.backward().unwrap();
        let g: Vec<(String, Vec<f32>)> = model
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, grads.get(&p).unwrap().to_vec().unwrap()))
            .collect();
        (loss.loss.item().unwrap(), g)
    };
    // Native decodes of fixed codes, for the checkpoint loaded by URL.
    let codes: Vec<f32> = (0..4 * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let native_decoded = {
        let _g = no_grad();
        let z = Tensor::from_slice(&gpu, &codes, [4, d]).unwrap();
        model.generate(&z).unwrap().to_vec().unwrap()
    };

    let port = serve(root().join("web/www"), fixtures.path().to_path_buf());
    let (_driver, driver_port) = start_driver(&driver);
    let shots = root().join("target/browser");
    std::fs::create_dir_all(&shots).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless=new",
                    "--enable-unsafe-webgpu",
                    "--use-webgpu-adapter=swiftshader",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--window-size=1600,1000",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("open a Chromium session through chromedriver");
        client
            .goto(&format!("http://127.0.0.1:{port}/index.html"))
            .await
            .unwrap();
        wait_for(&client, "window.app && app.ready", Duration::from_secs(180)).await;
        let t_ready = Instant::now();
        let adapter = client
            .execute("return app.adapter;", vec![])
            .await
            .unwrap();
        eprintln!("browser: adapter {adapter}");

        // 1. One fixed step, same weights, batch and eps as natively.
        let page = eval(
            &client,
            "app.fixedStep('/fixtures/vae.safetensors', args[0], args[1]).then(JSON.parse)",
            vec![json!(x_host), json!(eps_host)],
            Duration::from_secs(120),
        )
        .await;
        let page_loss = page["loss"].as_f64().unwrap();
        let loss_diff = (page_loss - native_loss as f64).abs() / (native_loss as f64).abs();
        let mut grad_diff = 0f64;
        for (name, native) in &native_grads {
            let got = floats(&page["grads"][name]);
            let w = worst_relative(&got, native);
            eprintln!("browser: fixed step, gradient of {name}: worst |page - native| / max|native| = {w:.2e}");
            grad_diff = grad_diff.max(w);
        }
        eprintln!(
            "browser: fixed step loss page {page_loss:.6} native {native_loss:.6} (relative difference {loss_diff:.2e}); worst gradient difference {grad_diff:.2e} of max"
        );
        assert!(loss_diff < 1e-4, "the page's loss differs from the native one by {loss_diff:.2e}");
        assert!(grad_diff < 1e-3, "the page's gradients differ from the native ones by {grad_diff:.2e} of their largest value");

        // 1b. Every kernel version the page's adapter can run (matmul v1..v5 in NN/NT/TN at
        // awkward sizes; conv2d im2col and implicit GEMM, forward, dx and dw) against f64
        // references computed in the page (web/src/lib.rs, `check_kernels`).
        let report = eval(&client, "app.engine.check_kernels()", vec![], Duration::from_secs(300)).await;
        let rows: Value = serde_json::from_str(report.as_str().expect("a JSON string")).expect("kernel rows");
        let mut ran = Vec::new();
        for row in rows.as_array().expect("rows") {
            let name = format!("{} {}", row["kernel"].as_str().unwrap(), row["version"].as_str().unwrap());
            if row["ran"] == json!(true) {
                let worst = row["worst"].as_f64().expect("worst");
                eprintln!("browser: {name}: worst |page - f64 reference| / max|reference| = {worst:.2e}");
                assert!(worst < 1e-4, "{name} in the page differs from the f64 reference by {worst:.2e}");
                ran.push(name);
            } else {
                eprintln!("browser: {name}: not run on this adapter: {}", row["why"].as_str().unwrap_or(""));
            }
        }
        // v1-v3 and both conv algorithms need nothing optional: they must run in every browser.
        for name in ["matmul v1", "matmul v2", "matmul v3", "conv2d im2col", "conv2d implicit"] {
            assert!(ran.iter().any(|r| r == name), "{name} did not run in the page: {rows}");
        }

        // 2. The native checkpoint loaded by URL through the page's own URL box.
        client
            .execute(
                "document.getElementById('url').value = '/fixtures/vae.safetensors'; \
                 document.getElementById('load-url').click();",
                vec![],
            )
            .await
            .unwrap();
        wait_for(&client, "app.kind.includes('vae.safetensors') && app.decodes > 0", Duration::from_secs(60)).await;
        let decoded = floats(
            &eval(
                &client,
                "app.engine.decode(Float32Array.from(args[0])).then(a => Array.from(a))",
                vec![json!(codes)],
                Duration::from_secs(60),
            )
            .await,
        );
        let decode_diff = decoded
            .iter()
            .zip(&native_decoded)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        eprintln!("browser: native checkpoint loaded by URL decodes within {decode_diff:.2e} of native (max |difference| of pixels)");
        assert!(decode_diff < 1e-4, "loaded checkpoint decodes differ by {decode_diff:.2e}");

        // 3. Training from a fresh model, a screenshot half-way.
        eval(&client, "app.newModel()", vec![], Duration::from_secs(60)).await;
        let t_train = Instant::now();
        client
            .execute(&format!("app.trainTo({STEPS});"), vec![])
            .await
            .unwrap();
        wait_for(&client, &format!("app.steps >= {}", STEPS / 2), Duration::from_secs(600)).await;
        std::fs::write(shots.join("training.png"), client.screenshot().await.unwrap()).unwrap();
        wait_for(
            &client,
            &format!("app.steps >= {STEPS} && !app.running && app.gridRefreshes >= 3"),
            Duration::from_secs(600),
        )
        .await;
        let train_seconds = t_train.elapsed().as_secs_f64();
        let status = client
            .execute("return {losses: app.losses, sps: app.stepsPerSecond};", vec![])
            .await
            .unwrap();
        let losses: Vec<f64> = status["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["loss"].as_f64().unwrap())
            .collect();
        let (first, last) = (losses[0], *losses.last().unwrap());
        let page_sps = status["sps"].as_f64().unwrap();
        eprintln!(
            "browser: loss {first:.1} -> {last:.1} nats per image in {STEPS} steps (batch 32), \
             {page_sps:.2} steps/s in the page ({train_seconds:.0} s with grids and explorer)"
        );
        assert!(
            last < 0.5 * first && last < 250.0,
            "the loss did not fall enough: {first:.1} -> {last:.1} (needs below half and below 250)"
        );

        // The sample grid is not blank.
        let grid = page_floats(&client, "app.lastGrid").await;
        let grid_std = std_dev(&grid);
        eprintln!("browser: sample grid: {} pixels, standard deviation {grid_std:.3}", grid.len());
        assert_eq!(grid.len(), 64 * 784);
        assert!(grid_std > 0.1, "the sample grid looks blank (std {grid_std:.3})");

        // Moving the most active dimension's slider changes the decoded image.
        let before = page_floats(&client, "app.lastDecoded").await;
        let decodes = client.execute("return app.decodes;", vec![]).await.unwrap();
        client
            .execute(
                "const s = document.querySelector('#sliders input'); s.value = 2.5; \
                 s.dispatchEvent(new Event('input'));",
                vec![],
            )
            .await
            .unwrap();
        wait_for(&client, &format!("app.decodes > {decodes}"), Duration::from_secs(60)).await;
        let after = page_floats(&client, "app.lastDecoded").await;
        let moved = mean_abs_diff(&before, &after);
        eprintln!("browser: moving a slider to 2.5 changed the decoded image by {moved:.3} per pixel");
        assert!(moved > 0.01, "the slider did not change the decoded image ({moved:.4} per pixel)");
        std::fs::write(shots.join("explorer.png"), client.screenshot().await.unwrap()).unwrap();

        // The 2-D latent VAE: a plane of decodes; a click on it decodes that point.
        client
            .execute(
                "const m = document.getElementById('model'); m.value = '2'; \
                 m.dispatchEvent(new Event('change'));",
                vec![],
            )
            .await
            .unwrap();
        wait_for(
            &client,
            "app.engine.latent_dim() === 2 && app.steps === 0 && app.dims.length === 2",
            Duration::from_secs(60),
        )
        .await;
        client
            .execute(&format!("app.trainTo({PLANE_STEPS});"), vec![])
            .await
            .unwrap();
        wait_for(
            &client,
            &format!("app.steps >= {PLANE_STEPS} && !app.running && app.z.length === 2"),
            Duration::from_secs(300),
        )
        .await;
        // Let the last refresh (grid, plane, explorer) finish: it runs after the last step.
        eval(&client, "new Promise(r => setTimeout(r, 500))", vec![], Duration::from_secs(5)).await;
        wait_for(&client, "app.dims.length === 2", Duration::from_secs(60)).await;
        let plane = page_floats(
            &client,
            "document.getElementById('plane').getContext('2d').getImageData(0, 0, 280, 280)\
             .data.filter((_, i) => i % 4 === 0)",
        )
        .await;
        let plane_std = std_dev(&plane) / 255.0;
        let before = page_floats(&client, "app.lastDecoded").await;
        let decodes = client.execute("return app.decodes;", vec![]).await.unwrap();
        client
            .execute(
                "const p = document.getElementById('plane'), r = p.getBoundingClientRect(); \
                 p.dispatchEvent(new MouseEvent('click', \
                   { clientX: r.left + 0.1 * r.width, clientY: r.top + 0.1 * r.height, bubbles: true }));",
                vec![],
            )
            .await
            .unwrap();
        wait_for(&client, &format!("app.decodes > {decodes}"), Duration::from_secs(60)).await;
        let after = page_floats(&client, "app.lastDecoded").await;
        let z = floats(&client.execute("return app.z;", vec![]).await.unwrap());
        let clicked = mean_abs_diff(&before, &after);
        eprintln!(
            "browser: 2-D VAE after {PLANE_STEPS} steps: plane of decodes std {plane_std:.3}; \
             a click at z = ({:.2}, {:.2}) changed the decoded image by {clicked:.3} per pixel",
            z[0], z[1]
        );
        assert!((z[0] + 2.4).abs() < 0.1 && (z[1] - 2.4).abs() < 0.1, "clicked z {z:?}");
        assert!(plane_std > 0.05, "the plane of decodes looks blank (std {plane_std:.3})");
        assert!(clicked > 0.005, "a click on the plane did not change the decoded image");
        std::fs::write(shots.join("plane.png"), client.screenshot().await.unwrap()).unwrap();
        client.close().await.unwrap();

        let native_sps = native_steps_per_second(&data, 50);
        eprintln!(
            "browser: VAE steps/s (batch 32): page {page_sps:.2}, native {native_sps:.1} on {}",
            gpu.summary().name
        );
        eprintln!(
            "browser: run time {:.0} s (build {:.0} s, page ready {:.0} s after the build)",
            t_start.elapsed().as_secs_f64(),
            (t_built - t_start).as_secs_f64(),
            (t_ready - t_built).as_secs_f64()
        );
    });
    let mut png = Vec::new();
    std::fs::File::open(shots.join("explorer.png"))
        .unwrap()
        .read_to_end(&mut png)
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
}
