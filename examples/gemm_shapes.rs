use poisonscope::model::kernels::{Mat, matmul};
use std::time::Instant;

fn t(name: &str, macs: usize, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        f();
    }
    let s = start.elapsed().as_secs_f64() / reps as f64;
    println!("{name:<50} {:.1} ms {:.1} GFLOP/s", s * 1e3, 2.0 * macs as f64 / s / 1e9);
}

fn main() {
    for (lhs, rhs) in [(8usize, 128usize), (256, 128), (8, 2), (256, 256), (32, 128)] {
        gemm::set_lhs_packing_threshold_single_thread(lhs);
        gemm::set_rhs_packing_threshold(rhs);
        println!("== lhs threshold {lhs} rhs {rhs}");
        for (o, k, n) in [(64usize, 576usize, 64 * 784usize), (128, 1152, 64 * 196), (256, 2304, 64 * 49), (512, 4608, 64 * 16)] {
            println!("o {o} k {k} n {n}");
            shape(o, k, n);
        }
    }
}

fn shape(o: usize, k: usize, n: usize) {
    let col: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32).collect();
    let gy: Vec<f32> = (0..o * n).map(|i| (i % 5) as f32).collect();
    let w: Vec<f32> = (0..o * k).map(|i| (i % 3) as f32).collect();
    let macs = o * k * n;
    let mut gw = vec![0.0; o * k];
    t("wgrad gwT[k,o] = col[k,n] gyT", macs, || matmul(k, o, n, Mat::rows(&col, n), Mat::transposed(&gy, n), &mut gw));
    let mut y = vec![0.0; o * n];
    t("fwd y[o,n] = w[o,k] col[k,n]", macs, || matmul(o, n, k, Mat::rows(&w, k), Mat::rows(&col, n), &mut y));
    let mut gc = vec![0.0; k * n];
    t("igrad gcol[k,n] = wT gy", macs, || matmul(k, n, o, Mat::transposed(&w, k), Mat::rows(&gy, n), &mut gc));
}
