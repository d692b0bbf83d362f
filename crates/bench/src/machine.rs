//! What a benchmark ran on: the CPU as the OS reports it, and the matmul
//! throughput measured on the backend at the start of the run.
//!
//! Two VMs of the same machine kind ran cogrpo's matmuls at different
//! speeds while PyTorch's were the same (issue 35); a throughput figure
//! means little without the CPU that produced it. `cogrpo bench` prints
//! this before its rows (`--json`: a `{"machine": ...}` line), and
//! `bench/compare.py` puts it beside PyTorch's own matmul rates.

use std::time::Instant;

use burn::prelude::*;
use serde::Serialize;

use mdm::Kernels;
use mdm::kernels::precision::weight_matmul;

/// The CPU flags that decide which kernels run: gemm's and the fused
/// kernels' AVX2 / AVX-512 paths, and the bf16 / fp16 / AMX extensions.
const FLAGS: [&str; 10] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_fp16",
];

/// One cache level as the kernel reports it (`/sys/devices/system/cpu/cpu0/cache`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cache {
    pub level: u32,
    /// `Data`, `Instruction` or `Unified`.
    pub kind: String,
    pub size_kib: u64,
    /// Logical CPUs sharing it.
    pub shared_by: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Cpu {
    pub model_name: String,
    pub vendor: String,
    pub family: Option<u32>,
    pub model: Option<u32>,
    /// Logical CPUs this process may use.
    pub threads: usize,
    /// Which of [`FLAGS`] the CPU has.
    pub flags: Vec<String>,
    pub caches: Vec<Cache>,
}

impl Cpu {
    /// The CPU of this machine (Linux: `/proc/cpuinfo` and sysfs; elsewhere
    /// only the thread count).
    pub fn detect() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut cpu = std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| Self::from_cpuinfo(&text))
            .unwrap_or_default();
        cpu.threads = threads;
        cpu.caches = caches(std::path::Path::new("/sys/devices/system/cpu/cpu0/cache"));
        cpu
    }

    /// The first processor's entry of a `/proc/cpuinfo` text.
    pub fn from_cpuinfo(text: &str) -> Self {
        let mut cpu = Self::default();
        for line in text.lines() {
            if line.trim().is_empty() && !cpu.model_name.is_empty() {
                break; // the first processor's block is enough
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "model name" => cpu.model_name = value.to_string(),
                "vendor_id" => cpu.vendor = value.to_string(),
                "cpu family" => cpu.family = value.parse().ok(),
                "model" => cpu.model = value.parse().ok(),
                "flags" => {
                    let has: Vec<&str> = value.split_whitespace().collect();
                    cpu.flags = FLAGS
                        .iter()
                        .filter(|f| has.contains(f))
                        .map(|f| f.to_string())
                        .collect();
                }
                _ => {}
            }
        }
        cpu
    }

    /// One line for a table's header: model, family/model, flags, caches.
    pub fn summary(&self) -> String {
        let caches: Vec<String> = self
            .caches
            .iter()
            .filter(|c| c.kind != "Instruction")
            .map(|c| format!("L{} {} KiB / {} thr", c.level, c.size_kib, c.shared_by))
            .collect();
        format!(
            "{} ({} family {} model {}), {} threads; {}; {}",
            if self.model_name.is_empty() {
                "unknown CPU"
            } else {
                &self.model_name
            },
            self.vendor,
            self.family.map_or("?".into(), |f| f.to_string()),
            self.model.map_or("?".into(), |m| m.to_string()),
            self.threads,
            self.flags.join(" "),
            caches.join(", ")
        )
    }
}

/// The cache levels under a sysfs `cache` directory (`index0`, `index1`, ...),
/// in index order; none where it cannot be read.
fn caches(dir: &std::path::Path) -> Vec<Cache> {
    let read = |index: &std::path::Path, name: &str| {
        std::fs::read_to_string(index.join(name)).map(|s| s.trim().to_string())
    };
    let mut out = Vec::new();
    for i in 0.. {
        let index = dir.join(format!("index{i}"));
        let (Ok(level), Ok(kind), Ok(size)) = (
            read(&index, "level"),
            read(&index, "type"),
            read(&index, "size"),
        ) else {
            break;
        };
        let size_kib = match size.strip_suffix('K') {
            Some(k) => k.parse().unwrap_or(0),
            None => size
                .strip_suffix('M')
                .and_then(|m| m.parse::<u64>().ok())
                .map_or(0, |m| m * 1024),
        };
        let shared_by = read(&index, "shared_cpu_list").map_or(1, |l| cpu_list_len(&l));
        out.push(Cache {
            level: level.parse().unwrap_or(0),
            kind,
            size_kib,
            shared_by,
        });
    }
    out
}

/// The number of CPUs in a kernel CPU list such as `0-3,8,10-11`.
fn cpu_list_len(list: &str) -> usize {
    list.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

/// A matmul's measured throughput.
#[derive(Debug, Clone, Serialize)]
pub struct MatmulRate {
    /// `[m, k, n]`: `(m x k) @ (k x n)`.
    pub shape: [usize; 3],
    pub gflops: f64,
}

/// What `cogrpo bench` prints before its rows.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: Cpu,
    pub matmul: Vec<MatmulRate>,
}

impl Machine {
    /// Two `#` lines for a table's header: the CPU, then the matmul rates.
    pub fn header(&self) -> String {
        let rates: Vec<String> = self
            .matmul
            .iter()
            .map(|r| {
                let [m, k, n] = r.shape;
                format!("{m} x {k} @ {k} x {n}: {:.0}", r.gflops)
            })
            .collect();
        format!(
            "# {}\n# matmul GFLOP/s: {}",
            self.cpu.summary(),
            rates.join(", ")
        )
    }
}

/// The shapes timed for a model of width `d_model` and MLP width `d_ff`:
/// a 1024^3 square, and the MLP's up- and down-projections of 1024 rows
/// (batch 16 at sequence 64). `bench/reference.py` times the same ones.
pub fn matmul_shapes(d_model: usize, d_ff: usize) -> Vec<[usize; 3]> {
    vec![
        [1024, 1024, 1024],
        [1024, d_model, d_ff],
        [1024, d_ff, d_model],
    ]
}

/// Float32 GFLOP/s of `a @ b` for each shape on the backend, through the
/// product the model's linear layers use (`weight_matmul`, at the
/// process's precision): best of 10 after 3 warm-ups (one product takes
/// milliseconds, and a shared VM's speed moves between them); reading one
/// element back waits for a device to finish.
pub fn matmul_rates<B: Kernels>(shapes: &[[usize; 3]], device: &B::Device) -> Vec<MatmulRate> {
    shapes
        .iter()
        .map(|&[m, k, n]| {
            let a = Tensor::<B, 2>::random([m, k], burn::tensor::Distribution::Default, device);
            let b = Tensor::<B, 2>::random([k, n], burn::tensor::Distribution::Default, device);
            let run = || {
                let c = weight_matmul(a.clone(), b.clone(), false);
                let _: Vec<f32> = c
                    .slice([0..1, 0..1])
                    .into_data()
                    .to_vec()
                    .unwrap_or_default();
            };
            for _ in 0..3 {
                run();
            }
            let mut best = f64::INFINITY;
            for _ in 0..10 {
                let t = Instant::now();
                run();
                best = best.min(t.elapsed().as_secs_f64());
            }
            MatmulRate {
                shape: [m, k, n],
                gflops: 2.0 * (m * k * n) as f64 / best / 1e9,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\
        model\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\n\
        flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_bf16 amx_tile\n\n\
        processor\t: 1\nvendor_id\t: OtherVendor\nmodel name\t: second\n";

    #[test]
    fn reads_the_first_processor_and_the_flags_that_matter() {
        let cpu = Cpu::from_cpuinfo(CPUINFO);
        assert_eq!(cpu.model_name, "Intel(R) Xeon(R) Processor");
        assert_eq!(cpu.vendor, "GenuineIntel");
        assert_eq!((cpu.family, cpu.model), (Some(6), Some(207)));
        assert_eq!(
            cpu.flags,
            [
                "avx2",
                "fma",
                "avx512f",
                "avx512bw",
                "avx512_bf16",
                "amx_tile"
            ]
        );
    }

    #[test]
    fn reads_sysfs_cache_levels() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let levels = [
            ("1", "Data", "48K", "0"),
            ("2", "Unified", "2048K", "0"),
            ("3", "Unified", "260M", "0-1"),
        ];
        for (i, (level, kind, size, shared)) in levels.iter().enumerate() {
            let index = dir.path().join(format!("index{i}"));
            std::fs::create_dir(&index).expect("index dir");
            for (name, value) in [
                ("level", level),
                ("type", kind),
                ("size", size),
                ("shared_cpu_list", shared),
            ] {
                std::fs::write(index.join(name), format!("{value}\n")).expect("a sysfs file");
            }
        }
        let got = caches(dir.path());
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[1].level, got[1].size_kib, got[1].shared_by),
            (2, 2048, 1)
        );
        assert_eq!(
            (got[2].kind.as_str(), got[2].size_kib, got[2].shared_by),
            ("Unified", 260 * 1024, 2)
        );
        assert!(caches(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len("0-3,8,10-11"), 7);
        assert_eq!(cpu_list_len(""), 0);
    }

    #[test]
    fn a_matmul_rate_is_positive_and_finite() {
        let rates = matmul_rates::<burn::backend::Flex>(&[[64, 32, 16]], &Default::default());
        assert_eq!(rates[0].shape, [64, 32, 16]);
        assert!(rates[0].gflops.is_finite() && rates[0].gflops > 0.0);
    }
}
