// Factorized sparse attention on the CPU: strided (band + residue class) and fixed
// (own block + summary columns), forward and backward, float32.
//
// Every query tile runs over exactly the keys its pattern allows, as one or two
// contiguous (or constant-stride) key segments, so every product is a dense GEMM on
// views of the original tensors: no gathers of q/k/v except the fixed pattern's summary
// columns (O(n c / l * d)), no n x n buffer, no mask tensor. Within a tile a row's keys
// are one range [lo, hi] of the tile's keys; only the tile's diagonal has entries outside
// it. Gradients are accumulated in place (GEMMs with beta = 1) into the output tensors.
//
//   strided(w, s) = Local(w) | StrideSkip(s): pass 1 tiles the sequence (band keys
//       [i - w, i]); pass 2 runs per residue class r (rows r, r + s, ...; leading
//       dimension s * d) over the class's keys further back than the band, and merges
//       into pass 1's output by log-sum-exp. s = 0: band only.
//   fixed(b, c) = SameBlock(b) | BlockSummary(b, c): one pass; a tile is a slice of one
//       block's queries, its keys the summary columns of all earlier blocks (a prefix of
//       one gathered (n/b * c, d) matrix) followed by its own block up to the diagonal.
//       c = 0: own block only.
//
// Threads (at::parallel_for, claiming tiles dynamically: for_tiles) run over (batch*head, tile)
// for the forward; the backward colours band tiles so that tiles run together never share a
// key, runs residue classes whole, and gives each fixed part (a run of blocks of one head, the
// split independent of the thread count) its own summary-column gradient buffer. Results are
// the same bits at any number of threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
#include <pthread.h>
#include <thread>
#include <vector>

// ------------------------------------------------------------------------------------
// GEMM: the BLAS the torch build links (MKL's sgemm_ on x86) when it exports one,
// else at::addmm on blob views (slower per call, same result).

extern "C" void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b,
                       const int* ldb, const float* beta, float* c, const int* ldc)
    __attribute__((weak));
// MKL's Fortran entry (argument by reference, like sgemm_): present where torch links MKL.
extern "C" int mkl_set_num_threads_local_(const int*) __attribute__((weak));

namespace {

// Inside our threads the BLAS must run single-threaded: MKL called from a parallel region
// otherwise starts teams of its own (oversubscription: measured 10x slower with 2 threads).
struct SerialBlas {
  int before = 0;
  SerialBlas() {
    const int one = 1;
    if (mkl_set_num_threads_local_) before = mkl_set_num_threads_local_(&one);
  }
  ~SerialBlas() {
    if (mkl_set_num_threads_local_) mkl_set_num_threads_local_(&before);
  }
};

// Row-major C (M x N, ldc) = alpha * op(A) op(B) + beta * C; op(A) is M x K, op(B) K x N.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  if (sgemm_) {
    // column-major view: C^T = op(B)^T op(A)^T
    const char cta = ta ? 'T' : 'N', ctb = tb ? 'T' : 'N';
    const int m = (int)N, n = (int)M, k = (int)K, la = (int)ldb, lb = (int)lda, lc = (int)ldc;
    sgemm_(&ctb, &cta, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
    return;
  }
  auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor a = ta ? at::from_blob((void*)A, {K, M}, {lda, 1}, opts).t()
                    : at::from_blob((void*)A, {M, K}, {lda, 1}, opts);
  at::Tensor b = tb ? at::from_blob((void*)B, {N, K}, {ldb, 1}, opts).t()
                    : at::from_blob((void*)B, {K, N}, {ldb, 1}, opts);
  at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  if (beta == 0.f) c.zero_();
  c.addmm_(a, b, beta == 0.f ? 1.f : beta, alpha);
}

// exp for x <= 0 (and -inf -> 0), branch-free so loops over it vectorize; rel. error ~2e-7.
inline float fast_exp(float x) {
  x = std::max(x, -87.0f);
  const float l2e = 1.44269504088896341f;
  float t = x * l2e;
  float fi = std::floor(t + 0.5f);
  float r = x - fi * 0.693359375f - fi * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = ((int32_t)fi + 127) << 23;
  float s;
  std::memcpy(&s, &e, sizeof(s));
  return p * s;
}

constexpr float NEG_INF = -std::numeric_limits<float>::infinity();

// max of x[0..n): eight lanes at a time (GCC vector extension; std::max loops stay scalar).
typedef float v8f __attribute__((vector_size(32)));
inline float row_max(const float* x, int64_t n) {
  v8f acc = {NEG_INF, NEG_INF, NEG_INF, NEG_INF, NEG_INF, NEG_INF, NEG_INF, NEG_INF};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    v8f t;
    std::memcpy(&t, x + j, sizeof(t));
    acc = acc > t ? acc : t;
  }
  float m = NEG_INF;
  for (int i = 0; i < 8; ++i) m = std::max(m, acc[i]);
  for (; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// A key segment: `count` keys at k[0], k[ld], ... (values alike).
struct Seg {
  const float* k;
  const float* v;
  int64_t ld;
  int64_t count;
};

// Per-thread scratch, reused across tiles (no allocation per tile).
struct Scratch {
  std::vector<float> s, dp, o;
  void fit(int64_t scores, int64_t out) {
    if ((int64_t)s.size() < scores) { s.resize(scores); dp.resize(scores); }
    if ((int64_t)o.size() < out) o.resize(out);
  }
};

// Scores of M query rows (q, ldq) against segments a then b, into S (M x N, N = a + b).
void scores(const float* q, int64_t ldq, int64_t M, int64_t D, const Seg& a, const Seg& b,
            float scale, float* S, int64_t N) {
  gemm(false, true, M, a.count, D, scale, q, ldq, a.k, a.ld, 0.f, S, N);
  gemm(false, true, M, b.count, D, scale, q, ldq, b.k, b.ld, 0.f, S + a.count, N);
}

// Forward of one tile: rows m attend keys [lo(m), hi(m)] of the concatenated segments.
// Writes the normalized output (o, ldo) and the log-sum-exp per row (lse, stride ldl).
template <typename Range>
void tile_forward(const float* q, int64_t ldq, int64_t M, int64_t D, const Seg& a, const Seg& b,
                  Range range, float scale, float* o, int64_t ldo, float* lse, int64_t ldl,
                  Scratch& w) {
  const int64_t N = a.count + b.count;
  w.fit(M * N, 0);
  float* S = w.s.data();
  scores(q, ldq, M, D, a, b, scale, S, N);
  std::vector<float> inv(M);
  for (int64_t m = 0; m < M; ++m) {
    float* row = S + m * N;
    int64_t lo, hi;
    range(m, lo, hi);
    if (lo > hi) {
      std::fill(row, row + N, 0.f);
      inv[m] = 0.f;
      lse[m * ldl] = NEG_INF;
      continue;
    }
    const float mx = row_max(row + lo, hi - lo + 1);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = lo; j <= hi; ++j) {
      float e = fast_exp(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    std::fill(row, row + lo, 0.f);
    std::fill(row + hi + 1, row + N, 0.f);
    inv[m] = 1.f / sum;
    lse[m * ldl] = mx + std::log(sum);
  }
  gemm(false, false, M, D, a.count, 1.f, S, N, a.v, a.ld, 0.f, o, ldo);
  gemm(false, false, M, D, b.count, 1.f, S + a.count, N, b.v, b.ld, a.count > 0 ? 1.f : 0.f, o, ldo);
  for (int64_t m = 0; m < M; ++m) {
    float* orow = o + m * ldo;
    const float f = inv[m];
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) orow[d] *= f;
  }
}

// Gradient segments: where the key/value gradients of a segment go.
struct GSeg {
  float* dk;
  float* dv;
  int64_t ld;
};

// Backward of one tile with the merged lse and delta = rowsum(dout * out).
template <typename Range>
void tile_backward(const float* q, int64_t ldq, const float* dout, float* dq, int64_t M,
                   int64_t D, const Seg& a, const Seg& b, const GSeg& ga, const GSeg& gb,
                   Range range, const float* lse, const float* delta, int64_t ldl, float scale,
                   float dq_beta, Scratch& w) {
  const int64_t N = a.count + b.count;
  w.fit(M * N, 0);
  float* P = w.s.data();
  float* dP = w.dp.data();
  scores(q, ldq, M, D, a, b, scale, P, N);
  for (int64_t m = 0; m < M; ++m) {
    float* row = P + m * N;
    int64_t lo, hi;
    range(m, lo, hi);
    if (lo > hi) { std::fill(row, row + N, 0.f); continue; }
    const float l = lse[m * ldl];
#pragma omp simd
    for (int64_t j = lo; j <= hi; ++j) row[j] = fast_exp(row[j] - l);
    std::fill(row, row + lo, 0.f);
    std::fill(row + hi + 1, row + N, 0.f);
  }
  // dV += P^T dO
  gemm(true, false, a.count, D, M, 1.f, P, N, dout, ldq, 1.f, ga.dv, ga.ld);
  gemm(true, false, b.count, D, M, 1.f, P + a.count, N, dout, ldq, 1.f, gb.dv, gb.ld);
  // dP = dO V^T
  gemm(false, true, M, a.count, D, 1.f, dout, ldq, a.v, a.ld, 0.f, dP, N);
  gemm(false, true, M, b.count, D, 1.f, dout, ldq, b.v, b.ld, 0.f, dP + a.count, N);
  // dS = P * (dP - delta) * scale, into P
  for (int64_t m = 0; m < M; ++m) {
    float* row = P + m * N;
    const float* drow = dP + m * N;
    int64_t lo, hi;
    range(m, lo, hi);
    const float dl = delta[m * ldl];
#pragma omp simd
    for (int64_t j = lo; j <= hi; ++j) row[j] = row[j] * (drow[j] - dl) * scale;
  }
  // dQ += dS K ; dK += dS^T Q
  gemm(false, false, M, D, a.count, 1.f, P, N, a.k, a.ld, dq_beta, dq, ldq);
  gemm(false, false, M, D, b.count, 1.f, P + a.count, N, b.k, b.ld, 1.f, dq, ldq);
  gemm(true, false, a.count, D, M, 1.f, P, N, q, ldq, 1.f, ga.dk, ga.ld);
  gemm(true, false, b.count, D, M, 1.f, P + a.count, N, q, ldq, 1.f, gb.dk, gb.ld);
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                  t.dim() == 3,
              name, " must be a contiguous float32 CPU tensor (BH, n, d)");
}

// Scratch per thread of the pool, sized on first use.
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

const Seg NO_SEG{nullptr, nullptr, 1, 0};

// Like at::parallel_for(0, count, 1, f), but every thread claims `step` items at a time from a
// shared counter until none are left (dynamic scheduling): threads that finish early, or run
// while another is held up (a busy machine), take more tiles instead of waiting at the end.
// Which thread runs an item never changes its result.
template <typename F>
void for_tiles(int64_t count, const F& f, int64_t step = 1) {
  if (count <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(count, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (;;) {
      const int64_t u0 = next.fetch_add(step, std::memory_order_relaxed);
      if (u0 >= count) break;
      f(u0, std::min(count, u0 + step));
    }
  });
}

// ------------------------------------------------------------------------------------
// strided(w, s)

int64_t class_len(int64_t n, int64_t s, int64_t r) { return r < n ? (n - 1 - r) / s + 1 : 0; }

std::vector<at::Tensor> strided_forward(at::Tensor q, at::Tensor k, at::Tensor v, int64_t w,
                                        int64_t s, double scale_d, int64_t tile, int64_t ctile) {
  check(q, "q"); check(k, "k"); check(v, "v");
  const int64_t BH = q.size(0), n = q.size(1), D = q.size(2);
  const float scale = (float)scale_d;
  auto out = at::empty_like(q);
  auto lse = at::empty({BH, n}, q.options());
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  float *op = out.data_ptr<float>(), *lp = lse.data_ptr<float>();
  const int64_t T = tile, nt = (n + T - 1) / T;
  // pass 1: the band
  for_tiles(BH * nt, [&](int64_t u0, int64_t u1) {
    SerialBlas serial;
    Scratch& sc = scratch();
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t bh = u / nt, i0 = (u % nt) * T, M = std::min(T, n - i0);
      const int64_t ks = std::max<int64_t>(0, i0 - w), N = i0 + M - ks;
      const int64_t off = bh * n * D;
      Seg a{kp + off + ks * D, vp + off + ks * D, D, N};
      auto range = [&](int64_t m, int64_t& lo, int64_t& hi) {
        const int64_t i = i0 + m;
        lo = std::max<int64_t>(0, i - w) - ks;
        hi = i - ks;
      };
      tile_forward(qp + off + i0 * D, D, M, D, a, NO_SEG, range, scale, op + off + i0 * D, D,
                   lp + bh * n + i0, 1, sc);
    }
  });
  if (s <= 0) return {out, lse};
  // pass 2: residue classes, keys b <= a - m0 (further back than the band)
  const int64_t m0 = w / s + 1, ld = s * D;
  for_tiles(BH * s, [&](int64_t u0, int64_t u1) {
    SerialBlas serial;
    Scratch& sc = scratch();
    thread_local std::vector<float> o2, l2;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t bh = u / s, r = u % s, G = class_len(n, s, r);
      const int64_t off = bh * n * D + r * D;
      for (int64_t a0 = m0; a0 < G; a0 += ctile) {
        const int64_t M = std::min(ctile, G - a0), N = a0 + M - m0;
        o2.resize(M * D);
        l2.resize(M);
        Seg a{kp + off, vp + off, ld, N};
        auto range = [&](int64_t m, int64_t& lo, int64_t& hi) { lo = 0; hi = a0 + m - m0; };
        tile_forward(qp + off + a0 * ld, ld, M, D, a, NO_SEG, range, scale, o2.data(), D,
                     l2.data(), 1, sc);
        for (int64_t m = 0; m < M; ++m) {  // merge by log-sum-exp
          float* orow = op + off + (a0 + m) * ld;
          float& l1 = lp[bh * n + r + (a0 + m) * s];
          const float nl = std::max(l1, l2[m]) + std::log1p(std::exp(-std::fabs(l1 - l2[m])));
          const float f1 = std::exp(l1 - nl), f2 = std::exp(l2[m] - nl);
          const float* o2r = o2.data() + m * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) orow[d] = orow[d] * f1 + o2r[d] * f2;
          l1 = nl;
        }
      }
    }
  });
  return {out, lse};
}

// delta = rowsum(dout * out), (BH, n)
at::Tensor row_delta(const at::Tensor& dout, const at::Tensor& out) {
  const int64_t BH = out.size(0), n = out.size(1), D = out.size(2);
  auto delta = at::empty({BH, n}, out.options());
  const float *g = dout.data_ptr<float>(), *o = out.data_ptr<float>();
  float* dl = delta.data_ptr<float>();
  at::parallel_for(0, BH * n, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float acc = 0.f;
#pragma omp simd reduction(+ : acc)
      for (int64_t d = 0; d < D; ++d) acc += g[r * D + d] * o[r * D + d];
      dl[r] = acc;
    }
  });
  return delta;
}

std::vector<at::Tensor> strided_backward(at::Tensor dout, at::Tensor q, at::Tensor k,
                                         at::Tensor v, at::Tensor out, at::Tensor lse, int64_t w,
                                         int64_t s, double scale_d, int64_t tile, int64_t ctile) {
  check(dout, "dout"); check(q, "q"); check(k, "k"); check(v, "v"); check(out, "out");
  const int64_t BH = q.size(0), n = q.size(1), D = q.size(2);
  const float scale = (float)scale_d;
  // No separate passes over memory before the tiles (they cost a third of the backward's
  // non-GEMM time and a barrier each): every row of dq is first written by exactly one band
  // tile (beta = 0); delta = rowsum(dout * out) of a row is computed by the band tile that
  // owns the row, just before its GEMMs read the same dout rows; and dk, dv are zeroed by the
  // tiles of colour 0, whose key ranges [ks(t), ks(t + colours)) partition [0, n) (colours * T
  // >= w + T: a tile's keys end before the next colour-0 tile's start), before any tile
  // accumulates into them (colour 0 runs first; the residue classes run after every colour).
  auto delta = at::empty({BH, n}, out.options());
  auto dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float *gp = dout.data_ptr<float>(), *lp = lse.data_ptr<float>(), *outp = out.data_ptr<float>();
  float *dlp = delta.data_ptr<float>();
  float *dqp = dq.data_ptr<float>(), *dkp = dk.data_ptr<float>(), *dvp = dv.data_ptr<float>();
  const int64_t T = tile, nt = (n + T - 1) / T;
  // band tiles t and t + colours never share a key: t's keys are [t T - w, t T + T)
  const int64_t colours = std::min(nt, (w + T + T - 1) / T);
  auto key_start = [&](int64_t t) { return t >= nt ? n : std::max<int64_t>(0, t * T - w); };
  for (int64_t colour = 0; colour < colours; ++colour) {
    const int64_t per = (nt - colour + colours - 1) / colours;
    for_tiles(BH * per, [&](int64_t u0, int64_t u1) {
      SerialBlas serial;
      Scratch& sc = scratch();
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t bh = u / per, t = colour + (u % per) * colours;
        const int64_t i0 = t * T, M = std::min(T, n - i0);
        const int64_t ks = key_start(t), N = i0 + M - ks;
        const int64_t off = bh * n * D;
        if (colour == 0) {
          const int64_t z1 = key_start(t + colours);
          std::memset(dkp + off + ks * D, 0, sizeof(float) * (z1 - ks) * D);
          std::memset(dvp + off + ks * D, 0, sizeof(float) * (z1 - ks) * D);
        }
        for (int64_t m = 0; m < M; ++m) {
          const float *g = gp + off + (i0 + m) * D, *o = outp + off + (i0 + m) * D;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int64_t d = 0; d < D; ++d) acc += g[d] * o[d];
          dlp[bh * n + i0 + m] = acc;
        }
        Seg a{kp + off + ks * D, vp + off + ks * D, D, N};
        GSeg ga{dkp + off + ks * D, dvp + off + ks * D, D};
        auto range = [&](int64_t m, int64_t& lo, int64_t& hi) {
          const int64_t i = i0 + m;
          lo = std::max<int64_t>(0, i - w) - ks;
          hi = i - ks;
        };
        tile_backward(qp + off + i0 * D, D, gp + off + i0 * D, dqp + off + i0 * D, M, D, a,
                      NO_SEG, ga, GSeg{nullptr, nullptr, 1}, range, lp + bh * n + i0,
                      dlp + bh * n + i0, 1, scale, 0.f, sc);
      }
    });
  }
  if (s > 0) {
    const int64_t m0 = w / s + 1, ld = s * D;
    for_tiles(BH * s, [&](int64_t u0, int64_t u1) {
    SerialBlas serial;
      Scratch& sc = scratch();
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t bh = u / s, r = u % s, G = class_len(n, s, r);
        const int64_t off = bh * n * D + r * D;
        for (int64_t a0 = m0; a0 < G; a0 += ctile) {
          const int64_t M = std::min(ctile, G - a0), N = a0 + M - m0;
          Seg a{kp + off, vp + off, ld, N};
          GSeg ga{dkp + off, dvp + off, ld};
          auto range = [&](int64_t m, int64_t& lo, int64_t& hi) { lo = 0; hi = a0 + m - m0; };
          tile_backward(qp + off + a0 * ld, ld, gp + off + a0 * ld, dqp + off + a0 * ld, M, D,
                        a, NO_SEG, ga, GSeg{nullptr, nullptr, 1}, range,
                        lp + bh * n + r + a0 * s, dlp + bh * n + r + a0 * s, s, scale, 1.f, sc);
        }
      }
    });
  }
  return {dq, dk, dv};
}

// ------------------------------------------------------------------------------------
// fixed(b, c)

// The summary columns of every complete block: (BH, (n / b) * c, D).
at::Tensor summary_cols(const at::Tensor& x, int64_t b, int64_t c) {
  const int64_t BH = x.size(0), n = x.size(1), D = x.size(2), full = n / b;
  if (c <= 0 || full == 0) return at::empty({BH, 0, D}, x.options());
  return x.narrow(1, 0, full * b).view({BH, full, b, D}).narrow(2, b - c, c)
      .reshape({BH, full * c, D}).contiguous();
}

// Parts per head in the fixed backward's split (enough work items for this many threads when
// B * H is small; each part costs a summary-gradient buffer of 2 * (n / b) * c * d floats).
constexpr int64_t FIXED_PARTS = 16;

// Work order for blocks: 0, nb-1, 1, nb-2, ... so contiguous chunks cost alike.
int64_t zigzag(int64_t u, int64_t nb) { return (u % 2 == 0) ? u / 2 : nb - 1 - u / 2; }

std::vector<at::Tensor> fixed_forward(at::Tensor q, at::Tensor k, at::Tensor v, int64_t b,
                                      int64_t c, double scale_d, int64_t tile) {
  check(q, "q"); check(k, "k"); check(v, "v");
  const int64_t BH = q.size(0), n = q.size(1), D = q.size(2), nb = (n + b - 1) / b;
  const float scale = (float)scale_d;
  auto out = at::empty_like(q);
  auto lse = at::empty({BH, n}, q.options());
  auto ks = summary_cols(k, b, c), vs = summary_cols(v, b, c);
  const int64_t ns = ks.size(1);
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float *ksp = ks.data_ptr<float>(), *vsp = vs.data_ptr<float>();
  float *op = out.data_ptr<float>(), *lp = lse.data_ptr<float>();
  const int64_t subs = (b + tile - 1) / tile;
  for_tiles(BH * nb * subs, [&](int64_t u0, int64_t u1) {
    SerialBlas serial;
    Scratch& sc = scratch();
    for (int64_t u = u0; u < u1; ++u) {
      // the costliest blocks (most summary columns) first, every head's alike
      const int64_t g = nb - 1 - u / (BH * subs), bh = (u / subs) % BH, r0 = (u % subs) * tile;
      const int64_t bs = g * b, blen = std::min(b, n - bs);
      if (r0 >= blen) continue;
      const int64_t M = std::min(tile, blen - r0), far = c > 0 ? g * c : 0;
      const int64_t off = bh * n * D, soff = bh * ns * D;
      Seg a{ksp + soff, vsp + soff, D, far};
      Seg bseg{kp + off + bs * D, vp + off + bs * D, D, r0 + M};
      auto range = [&](int64_t m, int64_t& lo, int64_t& hi) { lo = 0; hi = far + r0 + m; };
      tile_forward(qp + off + (bs + r0) * D, D, M, D, a, bseg, range, scale,
                   op + off + (bs + r0) * D, D, lp + bh * n + bs + r0, 1, sc);
    }
  });
  return {out, lse};
}

std::vector<at::Tensor> fixed_backward(at::Tensor dout, at::Tensor q, at::Tensor k, at::Tensor v,
                                       at::Tensor out, at::Tensor lse, int64_t b, int64_t c,
                                       double scale_d, int64_t tile) {
  check(dout, "dout"); check(q, "q"); check(k, "k"); check(v, "v"); check(out, "out");
  const int64_t BH = q.size(0), n = q.size(1), D = q.size(2), nb = (n + b - 1) / b;
  const float scale = (float)scale_d;
  auto delta = row_delta(dout, out);
  // every row of dq is first written by exactly one tile (beta = 0): no zero fill
  auto dq = at::empty_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
  auto ks = summary_cols(k, b, c), vs = summary_cols(v, b, c);
  const int64_t ns = ks.size(1);
  // Work items are (bh, part): a part is a contiguous run of the head's blocks in zigzag order
  // (so parts cost alike) with its own summary-gradient buffer (BH, parts, 2, ns, D); a block's
  // own keys belong to its part alone. The partition depends on BH and nb only, never on the
  // thread count, and the parts are folded in order: the same bits at any number of threads.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(nb, (FIXED_PARTS + BH - 1) / BH));
  auto dsum = at::empty({BH, parts, 2, ns, D}, q.options());
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float *ksp = ks.data_ptr<float>(), *vsp = vs.data_ptr<float>();
  const float *gp = dout.data_ptr<float>(), *lp = lse.data_ptr<float>(), *dlp = delta.data_ptr<float>();
  float *dqp = dq.data_ptr<float>(), *dkp = dk.data_ptr<float>(), *dvp = dv.data_ptr<float>();
  float* dsp = dsum.data_ptr<float>();
  const int64_t subs = (b + tile - 1) / tile;
  for_tiles(BH * parts, [&](int64_t u0, int64_t u1) {
    SerialBlas serial;
    Scratch& sc = scratch();
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t bh = u / parts, part = u % parts;
      const int64_t off = bh * n * D, soff = bh * ns * D;
      float* dks = dsp + (u * 2 + 0) * ns * D;
      float* dvs = dsp + (u * 2 + 1) * ns * D;
      std::fill(dks, dks + 2 * ns * D, 0.f);
      for (int64_t z = part * nb / parts; z < (part + 1) * nb / parts; ++z) {
        const int64_t g = zigzag(z, nb);
        const int64_t bs = g * b, blen = std::min(b, n - bs), far = c > 0 ? g * c : 0;
        for (int64_t sub = 0; sub < subs; ++sub) {
          const int64_t r0 = sub * tile;
          if (r0 >= blen) break;
          const int64_t M = std::min(tile, blen - r0);
          Seg a{ksp + soff, vsp + soff, D, far};
          Seg bseg{kp + off + bs * D, vp + off + bs * D, D, r0 + M};
          auto range = [&](int64_t m, int64_t& lo, int64_t& hi) { lo = 0; hi = far + r0 + m; };
          const int64_t row = off + (bs + r0) * D;
          tile_backward(qp + row, D, gp + row, dqp + row, M, D, a, bseg, GSeg{dks, dvs, D},
                        GSeg{dkp + off + bs * D, dvp + off + bs * D, D}, range,
                        lp + bh * n + bs + r0, dlp + bh * n + bs + r0, 1, scale, 0.f, sc);
        }
      }
    }
  });
  if (ns > 0) {  // fold the parts' summary gradients, in part order, into the summary columns
    at::parallel_for(0, BH * ns, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t u = j0; u < j1; ++u) {
        const int64_t bh = u / ns, j = u % ns;
        const int64_t row = bh * n * D + ((j / c) * b + b - c + j % c) * D;
        for (int64_t which = 0; which < 2; ++which) {
          float* dst = (which == 0 ? dkp : dvp) + row;
          for (int64_t part = 0; part < parts; ++part) {
            const float* src = dsp + (((bh * parts + part) * 2 + which) * ns + j) * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
          }
        }
      }
    });
  }
  return {dq, dk, dv};
}

}  // namespace


// ---------------------------------------------------------------------------------------------
// One cached decode step through every layer (the model's one-token path): LayerNorm, qkv,
// rotary turn of the new token's q and k, cache writes, attention over each head group's near
// keys (ring) and far keys (residue class or summary columns), output projection, MLP, and the
// final LayerNorm and head, in one call, so a token costs the weight reads and the attended keys
// rather than ~30 Python op dispatches per layer.
//
// Head groups (``GroupCache`` in cache.py) come as 8 integers each: layer, first head, stop head,
// near kind (0 none, 1 Local band of width w, 2 SameBlock of b), w or b, far kind (0 none,
// 1 StrideSkip residue classes of stride s, 2 BlockSummary of block b'), s or b', c; with the
// group's ring (B, 2, Hg, ring, hd) and far store: classes (s, B, 2, Hg, cap, hd) or summary
// columns (B, 2, Hg, cap, hd) (empty tensors where a group has none). Every interleaved, merged
// and split model of the strided and fixed patterns is such a list. The caller has made room
// for position ``i`` in every store (``GroupCache.reserve``) and counts it after
// (``GroupCache.advance_one``).
//
// Linear layers come in threes: (weight, bias, undefined) for float32, or (int8 weight, per-row
// scale, bias) for ``torch._weight_int8pack_mm`` (input cast to bfloat16; the bias's dtype is the
// output's, so the MLP's hidden layer and GELU run in bfloat16 as in the Python path).
// ``rope`` is empty, or (2, hd / 2): the cos and sin of position ``i`` with which the new token's
// q and k are turned (rotary positions; the stores hold keys already turned).
//
// Threads: float32 linear layers split their output rows over the intra-op threads, claimed a
// few at a time (for_tiles; each row's dot products are the same code on any thread, so the
// result does not depend on the thread count); the attention runs one (row, head) per item.
// Everything else is O(B d) on the calling thread.

namespace {

// ---------------------------------------------------------------------------------------------
// Sharing a decode step's small loops without waiting for a thread that has not started.
//
// A one-token step runs ~5 loops per layer of tens of microseconds each. As OpenMP regions
// (at::parallel_for) every loop ends at a barrier that waits for every thread of the team, so a
// thread that the OS has not scheduled (another process on the core) holds the step up for a
// scheduling delay each time: on 2 shared cores a d256 6-layer step took 60 ms at 2 threads vs
// 1.5 ms at 1 (issue 24). share() instead publishes the loop to helper threads (started on first
// use, one fewer than at::get_num_threads()) and claims items itself from the same counter; it
// waits only for items a helper has already claimed. A helper that wakes late finds no items
// left and goes back to waiting, so a held-up helper costs nothing. Which thread runs an item
// never changes its result. Helpers spin about a millisecond after each loop (the next loop
// follows within microseconds, the next step's within a fraction of a millisecond), then sleep
// on a condition variable.
class SharePool {
 public:
  static SharePool& get() {
    static SharePool* pool = [] {   // never destroyed: helpers may still wait at process exit
      auto* p = new SharePool();
      pthread_atfork(nullptr, nullptr, [] { SharePool::get().after_fork(); });
      return p;
    }();
    return *pool;
  }

  template <typename F>
  void run(int64_t count, int64_t step, int threads, const F& f) {
    if (count <= 0) return;
    step = std::max<int64_t>(1, step);
    const int helpers = (int)std::min<int64_t>(threads - 1, (count + step - 1) / step - 1);
    if (helpers <= 0 || busy_.exchange(true)) {   // serial, or a nested / concurrent call
      for (int64_t u = 0; u < count; u += step) f(u, std::min(count, u + step));
      return;
    }
    start(helpers);
    const std::function<void(int64_t, int64_t)> fn = [&f](int64_t a, int64_t b) { f(a, b); };
    fn_ = &fn;
    count_ = count;
    step_ = step;
    wanted_.store(helpers);
    next_.store(0);
    done_.store(0);
    open_.store(true);
    {
      std::lock_guard<std::mutex> lock(mu_);
      gen_.fetch_add(1);
    }
    if (sleeping_.load() > 0) cv_.notify_all();
    claim();
    wait([&] { return done_.load() >= count; });   // only items a helper holds
    open_.store(false);
    wait([&] { return inside_.load() == 0; });     // no helper still reads fn_
    std::exception_ptr error;
    std::swap(error, error_);
    busy_.store(false);
    if (error) std::rethrow_exception(error);
  }

 private:
  // Spin first (a helper's item takes microseconds; yielding the core could cost a time slice on
  // a busy machine), then yield.
  template <typename P>
  static void wait(const P& ready) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    bool spinning = true;
    for (int spin = 1; !ready(); ++spin) {
      if (spinning) {
        pause();
        if (spin % 64 == 0) spinning = std::chrono::steady_clock::now() < until;
      } else {
        std::this_thread::yield();
      }
    }
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  void claim() {
    for (;;) {
      const int64_t u = next_.fetch_add(step_);
      if (u >= count_) return;
      const int64_t e = std::min(count_, u + step_);
      try {
        (*fn_)(u, e);
      } catch (...) {   // rethrown by run() on the calling thread
        std::lock_guard<std::mutex> lock(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(e - u);
    }
  }

  void start(int helpers) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t before = gen_.load();   // a new helper takes part in the job published next
    while ((int)threads_ < helpers) {
      const int index = (int)threads_++;
      std::thread([this, index, before] { helper(index, before); }).detach();
    }
  }

  void helper(int index, uint64_t seen) {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    for (;;) {
      uint64_t g = gen_.load();
      // spin ~1 ms (the next step's loops come sooner), then sleep
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(1000);
      for (int spin = 1; g == seen; ++spin) {
        pause();
        g = gen_.load();
        if (spin % 64 == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.fetch_add(1);
        cv_.wait(lock, [&] { return gen_.load() != seen; });
        sleeping_.fetch_sub(1);
        g = gen_.load();
      }
      seen = g;
      if (index >= wanted_.load()) continue;
      inside_.fetch_add(1);
      if (open_.load() && gen_.load() == seen) claim();
      inside_.fetch_sub(1);
    }
  }

  void after_fork() {   // the child has no helpers: forget them, fresh locks
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
    new (&error_mu_) std::mutex();
    error_ = nullptr;
    threads_ = 0;
    sleeping_.store(0);
    inside_.store(0);
    open_.store(false);
    busy_.store(false);
  }

  std::mutex mu_, error_mu_;
  std::condition_variable cv_;
  std::exception_ptr error_;
  size_t threads_ = 0;
  // each counter the threads update on a cache line of its own (no false sharing between cores)
  alignas(64) std::atomic<uint64_t> gen_{0};
  alignas(64) std::atomic<int64_t> next_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  alignas(64) std::atomic<int> inside_{0};
  alignas(64) std::atomic<int> sleeping_{0};
  std::atomic<bool> open_{false}, busy_{false};
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t count_ = 0, step_ = 1;
  std::atomic<int> wanted_{0};
};

// The decode step's loops: items [0, count) in claims of `step`, on this thread and the helpers.
// Loops below share_min_work multiply-adds (default 65536, ~5-10 us) run inline: waking a helper
// costs more than they do. Tests set it to 0 to share every loop.
std::atomic<int64_t> share_min_work{1 << 16};

template <typename F>
void share(int64_t count, const F& f, int64_t step = 1, int64_t work = -1) {
  const bool small = work >= 0 && work < share_min_work.load(std::memory_order_relaxed);
  SharePool::get().run(count, step, small ? 1 : at::get_num_threads(), f);
}

constexpr int64_t GROUP_INTS = 8;
constexpr int64_t SMALL_BATCH = 8;   // up to this many rows, linear layers read each weight row once

inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += a[j] * b[j];
  return acc;
}

// erf for GELU, branch-free (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
inline float erf_approx(float x) {
  const float a = std::fabs(x);
  const float t = 1.f / (1.f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  return std::copysign(1.f - p * t * fast_exp(-a * a), x);
}

enum Act { PLAIN = 0, GELU = 1, ADD = 2 };   // ADD: y += x W^T + b (a residual)

inline void finish(float* y, const float* r, const float* bias, int64_t count, int act) {
#pragma omp simd
  for (int64_t o = 0; o < count; ++o) {
    const float t = r[o] + bias[o];
    y[o] = act == ADD ? y[o] + t : act == GELU ? 0.5f * t * (1.f + erf_approx(t * 0.70710678118654752f)) : t;
  }
}

// y (B, out) (op)= x (B, in) W^T + bias, W (out, in) row-major; output rows split over threads.
void linear_f32(const float* x, int64_t B, int64_t in, const float* W, const float* bias, int64_t out,
                float* y, int act) {
  const int64_t rows = std::max<int64_t>(8, 8192 / std::max<int64_t>(1, in));   // >= 32 KB of weights a claim
  share(out, [&](int64_t o0, int64_t o1) {
    const int64_t cols = o1 - o0;
    thread_local std::vector<float> r;
    if ((int64_t)r.size() < B * cols) r.resize(B * cols);
    if (B <= SMALL_BATCH) {
      for (int64_t o = o0; o < o1; ++o) {
        const float* w = W + o * in;
        for (int64_t b = 0; b < B; ++b) r[b * cols + o - o0] = dot(w, x + b * in, in);
      }
    } else {
      SerialBlas serial;
      gemm(false, true, B, cols, in, 1.f, x, in, W + o0 * in, in, 0.f, r.data(), cols);
    }
    for (int64_t b = 0; b < B; ++b) finish(y + b * out + o0, r.data() + b * cols, bias + o0, cols, act);
  }, rows, B * in * out);
}

// y (B, out) (op)= x (B, in) W^T + bias for the batched stream decoder, from Wt = W transposed
// (in, ldw >= out rounded up to OV, zero-padded). Every output is one chain of multiply-adds over
// the inputs in order, computed by the same code whichever tile and slot its row falls in, so a
// row's values do not depend on the rows beside it (nor on the thread count); register tiles of
// RB rows x OV outputs read each weight once per RB rows.
void linear_rows(const float* x, int64_t B, int64_t in, const float* Wt, int64_t ldw, const float* bias,
                 int64_t out, float* y, int act) {
  constexpr int64_t OV = 32, RB = 6;
  const int64_t otiles = (out + OV - 1) / OV, rtiles = (B + RB - 1) / RB;
  for_tiles(otiles * rtiles, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t o0 = (u % otiles) * OV, r0 = (u / otiles) * RB;
      const int64_t oc = std::min(OV, out - o0), rc = std::min(RB, B - r0);
      const float* xr[RB];
      for (int64_t r = 0; r < RB; ++r) xr[r] = x + (r0 + std::min(r, rc - 1)) * in;   // a short tile repeats its last row
      float acc[RB][OV];
      for (int64_t r = 0; r < RB; ++r)
        for (int64_t o = 0; o < OV; ++o) acc[r][o] = 0.f;
      for (int64_t j = 0; j < in; ++j) {
        const float* wj = Wt + j * ldw + o0;
        for (int64_t r = 0; r < RB; ++r) {
          const float xv = xr[r][j];
#pragma omp simd
          for (int64_t o = 0; o < OV; ++o) acc[r][o] += xv * wj[o];
        }
      }
      for (int64_t r = 0; r < rc; ++r) finish(y + (r0 + r) * out + o0, acc[r], bias + o0, oc, act);
    }
  });
}

void layer_norm_rows(const float* x, int64_t B, int64_t d, const float* w, const float* b, double eps, float* y) {
  for (int64_t r = 0; r < B; ++r) {
    const float* xr = x + r * d;
    float mean = 0.f, var = 0.f;
#pragma omp simd reduction(+ : mean)
    for (int64_t j = 0; j < d; ++j) mean += xr[j];
    mean /= (float)d;
#pragma omp simd reduction(+ : var)
    for (int64_t j = 0; j < d; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    const float inv = 1.f / std::sqrt(var / (float)d + (float)eps);
    float* yr = y + r * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
  }
}

// softmax(q . k * scale) v over two key segments (keys and values `hd` apart within a segment).
void attend_one(const float* q, int64_t hd, float scale, const Seg& a, const Seg& b, float* out,
                std::vector<float>& s) {
  const int64_t N = a.count + b.count;
  if (N == 0) {
    std::fill(out, out + hd, 0.f);
    return;
  }
  if ((int64_t)s.size() < N) s.resize(N);
  for (int64_t j = 0; j < a.count; ++j) s[j] = dot(q, a.k + j * a.ld, hd) * scale;
  for (int64_t j = 0; j < b.count; ++j) s[a.count + j] = dot(q, b.k + j * b.ld, hd) * scale;
  const float mx = row_max(s.data(), N);
  float sum = 0.f;
  float* sp = s.data();
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < N; ++j) {
    const float e = fast_exp(sp[j] - mx);
    sp[j] = e;
    sum += e;
  }
  std::fill(out, out + hd, 0.f);
  for (int64_t j = 0; j < a.count; ++j) {
    const float p = sp[j];
    const float* v = a.v + j * a.ld;
#pragma omp simd
    for (int64_t e = 0; e < hd; ++e) out[e] += p * v[e];
  }
  for (int64_t j = 0; j < b.count; ++j) {
    const float p = sp[a.count + j];
    const float* v = b.v + j * b.ld;
#pragma omp simd
    for (int64_t e = 0; e < hd; ++e) out[e] += p * v[e];
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t e = 0; e < hd; ++e) out[e] *= inv;
}

// How many positions j < x have j % block >= block - c (the summary columns below x).
inline int64_t summary_count(int64_t x, int64_t block, int64_t c) {
  if (x <= 0) return 0;
  return (x / block) * c + std::max<int64_t>(0, x % block - (block - c));
}

struct Group {
  int64_t layer, h0, h1, near_kind, near_size, far_kind, far_size, c;
  at::Tensor ring, store;
  int64_t slot = 0, near = 0, far = 0, lo = 0;   // this step's ring slot and key counts
  int64_t rows = 1, row = 0;                     // the stores hold `rows` sequences; this one is `row`
};

void check_store(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.numel() == 0 || (t.scalar_type() == at::kFloat && t.is_contiguous() && t.device().is_cpu()),
              "decode_step: ", name, " must be a contiguous float32 CPU tensor");
}

// Plan one group's step at position i: ring slot, near keys [lo, i], far keys below lo.
void plan_group(Group& g, int64_t i) {
  if (g.near_kind == 1) {            // Local(w): the whole filled ring (w + 1 slots)
    const int64_t ring = g.near_size + 1;
    g.slot = i % ring;
    g.near = std::min<int64_t>(i + 1, ring);
    g.lo = i - g.near_size;
  } else if (g.near_kind == 2) {     // SameBlock(b): the current block, a prefix of the ring
    g.slot = i % g.near_size;
    g.near = i % g.near_size + 1;
    g.lo = i + 1 - g.near;
  } else {
    g.near = 0;
    g.lo = i + 1;
  }
  g.far = 0;
  if (g.lo > 0 && g.far_kind == 1) {
    const int64_t s = g.far_size, r = i % s;
    g.far = std::max<int64_t>(0, (g.lo - r + s - 1) / s);
  } else if (g.lo > 0 && g.far_kind == 2) {
    g.far = summary_count(g.lo, g.far_size, g.c);
  }
}

// Write one row's new k and v (qkv: that row's (3, H, hd), turned) into a group's ring and far store.
void write_group(const Group& g, const float* qkv, int64_t H, int64_t hd, int64_t i) {
  const int64_t Hg = g.h1 - g.h0, B = g.rows, b = g.row;
  for (int64_t kv = 0; kv < 2; ++kv)
    for (int64_t h = 0; h < Hg; ++h) {
      const float* src = qkv + ((1 + kv) * H + g.h0 + h) * hd;
      if (g.near_kind != 0) {
        const int64_t ring = g.ring.size(3);
        float* dst = g.ring.data_ptr<float>() + (((b * 2 + kv) * Hg + h) * ring + g.slot) * hd;
        std::memcpy(dst, src, hd * sizeof(float));
      }
      if (g.far_kind == 1) {
        const int64_t s = g.far_size, cap = g.store.size(4);
        TORCH_CHECK(i / s < cap, "decode_step: no room in the residue-class store");
        float* dst = g.store.data_ptr<float>() +
                     (((((i % s) * B + b) * 2 + kv) * Hg + h) * cap + i / s) * hd;
        std::memcpy(dst, src, hd * sizeof(float));
      } else if (g.far_kind == 2 && i % g.far_size >= g.far_size - g.c) {
        const int64_t cap = g.store.size(3), at_ = summary_count(i, g.far_size, g.c);
        TORCH_CHECK(at_ < cap, "decode_step: no room in the summary store");
        float* dst = g.store.data_ptr<float>() + (((b * 2 + kv) * Hg + h) * cap + at_) * hd;
        std::memcpy(dst, src, hd * sizeof(float));
      }
    }
}

// The near and far key segments of (row b, group head h) after the writes.
void group_segments(const Group& g, int64_t h, int64_t hd, int64_t i, Seg& a, Seg& f) {
  const int64_t Hg = g.h1 - g.h0, B = g.rows, b = g.row;
  a = NO_SEG;
  f = NO_SEG;
  if (g.near > 0) {
    const int64_t ring = g.ring.size(3);
    const float* base = g.ring.data_ptr<float>();
    a = Seg{base + ((b * 2 + 0) * Hg + h) * ring * hd, base + ((b * 2 + 1) * Hg + h) * ring * hd, hd, g.near};
  }
  if (g.far > 0 && g.far_kind == 1) {
    const int64_t s = g.far_size, cap = g.store.size(4);
    const float* base = g.store.data_ptr<float>() + ((i % s) * B + b) * 2 * Hg * cap * hd;
    f = Seg{base + (0 * Hg + h) * cap * hd, base + (1 * Hg + h) * cap * hd, hd, g.far};
  } else if (g.far > 0 && g.far_kind == 2) {
    const int64_t cap = g.store.size(3);
    const float* base = g.store.data_ptr<float>() + b * 2 * Hg * cap * hd;
    f = Seg{base + (0 * Hg + h) * cap * hd, base + (1 * Hg + h) * cap * hd, hd, g.far};
  }
}

// ATen ops run under it on their calling thread alone (no OpenMP team of their own: ATen's and
// oneDNN's thread counts read the calling thread's omp nthreads).
struct OneThread {
#ifdef _OPENMP
  int before = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(before); }
#endif
};

// y = x W^T + bias with the int8 weight (torch._weight_int8pack_mm, bfloat16 input), on the calling
// thread alone: the op's own at::parallel_for would be an OpenMP region per layer (a stall each on a
// busy machine: 222 ms vs 0.67 ms per step of the music model at 2 threads), and the layers are
// too small to split (each call costs ~6 us of dispatch; a 640 x 160 layer ~10 us of work).
at::Tensor lin3(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, bool int8) {
  if (!int8) return at::linear(x, a, b);
  at::Tensor xb = x.scalar_type() == at::kBFloat16 ? x : x.to(at::kBFloat16);
  OneThread one;
  return at::_weight_int8pack_mm(xb, a, b) + c;
}


// The step of B rows, row b at position pos[b] with its own groups (groups[b * G + k]): the
// caller planned nothing yet. ``rope``: empty, or (B, 2, hd / 2) (each row's cos and sin).
at::Tensor decode_core(at::Tensor x_in, const std::vector<at::Tensor>& w, std::vector<Group>& groups, int64_t G,
                       const std::vector<int64_t>& pos, int64_t n_heads, const std::vector<double>& eps,
                       const std::vector<double>& scales, bool int8, at::Tensor rope, bool rowwise) {
  const int64_t B = x_in.size(0), d = x_in.size(1), H = n_heads, hd = d / n_heads;
  const int64_t L = (int64_t)scales.size();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < G; ++k) {
      Group& g = groups[b * G + k];
      const int64_t i = pos[b];
      const bool writes_summary = g.far_kind == 2 && i % g.far_size >= g.far_size - g.c;
      TORCH_CHECK(g.near_kind == 0 || g.ring.dim() == 5, "decode_step: a group lacks its ring");
      TORCH_CHECK(g.far_kind != 1 || g.store.dim() == 6, "decode_step: a group lacks its residue-class store");
      TORCH_CHECK(!writes_summary || g.store.dim() == 5, "decode_step: a group lacks its summary store");
      TORCH_CHECK(g.h0 >= 0 && g.h0 < g.h1 && g.h1 <= n_heads && g.layer >= 0 && g.layer < L,
                  "decode_step: a group's heads or layer are out of range");
      TORCH_CHECK(g.row >= 0 && g.row < g.rows && (g.near_kind == 0 || g.ring.size(0) == g.rows),
                  "decode_step: a group's row is out of range");
      plan_group(g, i);
      TORCH_CHECK(g.far == 0 || g.store.dim() >= 5, "decode_step: a group lacks its far store");
    }
  const bool turn = rope.numel() > 0;
  at::Tensor rope_f = turn ? rope.to(at::kFloat).contiguous() : rope;
  TORCH_CHECK(!turn || (rope_f.dim() == 3 && rope_f.size(0) == B && rope_f.size(2) * 2 == hd),
              "decode_step: rope must be (B, 2, head_dim / 2)");
  const int64_t half = hd / 2;
  at::Tensor x = x_in.contiguous().clone();
  auto opts = x.options();
  at::Tensor h = at::empty({B, d}, opts), qkv_f32 = at::empty({B, 3 * d}, opts), y = at::empty({B, d}, opts);
  at::Tensor hid;   // float32 MLP hidden (B, hidden)
  float* xp = x.data_ptr<float>();
  size_t k = 0;
  // a linear layer: weight (out, in) and BLAS above SMALL_BATCH rows, or (rowwise) Wt (in, ldw)
  auto lin = [&](const float* in_p, int64_t in, const at::Tensor& W, const at::Tensor& bias, int64_t out, float* y_p,
                 int act) {
    if (rowwise) {
      TORCH_CHECK(W.dim() == 2 && W.size(0) == in && W.size(1) >= out, "decode_rows: weights must be transposed");
      linear_rows(in_p, B, in, W.data_ptr<float>(), W.size(1), bias.data_ptr<float>(), out, y_p, act);
    } else {
      linear_f32(in_p, B, in, W.data_ptr<float>(), bias.data_ptr<float>(), out, y_p, act);
    }
  };
  // head -> its group index within a row
  std::vector<std::vector<int64_t>> of_layer(L, std::vector<int64_t>(H, -1));
  for (int64_t q = 0; q < G; ++q)
    for (int64_t hh = groups[q].h0; hh < groups[q].h1; ++hh) of_layer[groups[q].layer][hh] = q;
  for (int64_t layer = 0; layer < L; ++layer) {
    at::Tensor qkv;
    if (int8) {
      OneThread one;   // ATen's ops here (oneDNN's bfloat16 GELU too) start no OpenMP teams
      at::Tensor hn = at::layer_norm(x, {d}, w[k], w[k + 1], eps[2 * layer]);
      qkv = lin3(hn, w[k + 2], w[k + 3], w[k + 4], int8).to(at::kFloat).contiguous();
    } else {
      layer_norm_rows(xp, B, d, w[k].data_ptr<float>(), w[k + 1].data_ptr<float>(), eps[2 * layer],
                      h.data_ptr<float>());
      lin(h.data_ptr<float>(), d, w[k + 2], w[k + 3], 3 * d, qkv_f32.data_ptr<float>(), PLAIN);
      qkv = qkv_f32;
    }
    float* qp = qkv.data_ptr<float>();
    if (turn) {   // q and k of every head turned at the row's position
      const float* rp = rope_f.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        const float *cs = rp + b * 2 * half, *sn = cs + half;
        for (int64_t part = 0; part < 2; ++part)
          for (int64_t hh = 0; hh < H; ++hh) {
            float* v = qp + ((b * 3 + part) * H + hh) * hd;
            for (int64_t j = 0; j < half; ++j) {
              const float x1 = v[j], x2 = v[half + j];
              v[j] = x1 * cs[j] - x2 * sn[j];
              v[half + j] = x2 * cs[j] + x1 * sn[j];
            }
          }
      }
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t q = 0; q < G; ++q) {
        const Group& g = groups[b * G + q];
        if (g.layer == layer) write_group(g, qp + b * 3 * d, H, hd, pos[b]);
      }
    const std::vector<int64_t>& of = of_layer[layer];
    float* yp = y.data_ptr<float>();
    const float scale = (float)scales[layer];
    int64_t attend_work = 0;   // multiply-adds of this layer's attention (q.k and p.v)
    for (const Group& g : groups)   // every row's groups of this layer, each planned at the row's position
      if (g.layer == layer) attend_work += 2 * (g.h1 - g.h0) * (g.near + g.far) * hd;
    share(B * H, [&](int64_t u0, int64_t u1) {
      thread_local std::vector<float> s;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t b = u / H, hh = u % H;
        float* out = yp + b * d + hh * hd;
        if (of[hh] < 0) { std::fill(out, out + hd, 0.f); continue; }
        const Group& g = groups[b * G + of[hh]];
        Seg a, f;
        group_segments(g, hh - g.h0, hd, pos[b], a, f);
        attend_one(qp + (b * 3 * H + hh) * hd, hd, scale, a, f, out, s);
      }
    }, 1, attend_work);
    if (int8) {
      OneThread one;
      x = x + lin3(y, w[k + 5], w[k + 6], w[k + 7], int8);
      at::Tensor hn = at::layer_norm(x, {d}, w[k + 8], w[k + 9], eps[2 * layer + 1]);
      at::Tensor g = at::gelu(lin3(hn, w[k + 10], w[k + 11], w[k + 12], int8));
      x = (x + lin3(g, w[k + 13], w[k + 14], w[k + 15], int8)).contiguous();
      xp = x.data_ptr<float>();
    } else {
      lin(yp, d, w[k + 5], w[k + 6], d, xp, ADD);
      layer_norm_rows(xp, B, d, w[k + 8].data_ptr<float>(), w[k + 9].data_ptr<float>(), eps[2 * layer + 1],
                      h.data_ptr<float>());
      const int64_t hidden = w[k + 11].size(0);
      if (!hid.defined() || hid.size(1) != hidden) hid = at::empty({B, hidden}, opts);
      lin(h.data_ptr<float>(), d, w[k + 10], w[k + 11], hidden, hid.data_ptr<float>(), GELU);
      lin(hid.data_ptr<float>(), hidden, w[k + 13], w[k + 14], d, xp, ADD);
    }
    k += 16;
  }
  if (int8) {
    OneThread one;
    at::Tensor hf = at::layer_norm(x, {d}, w[k], w[k + 1], eps[2 * L]);
    return lin3(hf, w[k + 2], w[k + 3], w[k + 4], int8).to(at::kFloat);
  }
  layer_norm_rows(xp, B, d, w[k].data_ptr<float>(), w[k + 1].data_ptr<float>(), eps[2 * L], h.data_ptr<float>());
  const int64_t vocab = w[k + 3].size(0);
  at::Tensor logits = at::empty({B, vocab}, opts);
  lin(h.data_ptr<float>(), d, w[k + 2], w[k + 3], vocab, logits.data_ptr<float>(), PLAIN);
  return logits;
}

void check_inputs(const at::Tensor& x_in, const std::vector<at::Tensor>& w, int64_t L, int64_t G) {
  TORCH_CHECK(x_in.dim() == 2 && x_in.scalar_type() == at::kFloat, "decode_step: x must be (B, d) float32");
  TORCH_CHECK((int64_t)w.size() == 16 * L + 5, "decode_step: weights and layers do not match");
  (void)G;
}

Group group_of(const int64_t* s, const at::Tensor& ring, const at::Tensor& store, int64_t rows, int64_t row) {
  check_store(ring, "a ring");
  check_store(store, "a far store");
  Group g{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], ring, store};
  g.rows = rows;
  g.row = row;
  return g;
}

}  // namespace

// B sequences at one position i, their caches batched (every store holds the B rows).
at::Tensor decode_step(at::Tensor x_in, std::vector<at::Tensor> w, std::vector<int64_t> spec,
                       std::vector<at::Tensor> rings, std::vector<at::Tensor> stores, int64_t i,
                       int64_t n_heads, std::vector<double> eps, std::vector<double> scales, bool int8,
                       at::Tensor rope) {
  at::NoGradGuard no_grad;
  const int64_t L = (int64_t)scales.size(), G = (int64_t)spec.size() / GROUP_INTS;
  check_inputs(x_in, w, L, G);
  TORCH_CHECK((int64_t)rings.size() == G && (int64_t)stores.size() == G,
              "decode_step: weights, groups and stores do not match");
  const int64_t B = x_in.size(0);
  std::vector<Group> groups;
  groups.reserve(B * G);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t q = 0; q < G; ++q) groups.push_back(group_of(spec.data() + q * GROUP_INTS, rings[q], stores[q], B, b));
  at::Tensor rope_rows = rope.numel() > 0 ? rope.to(at::kFloat).reshape({1, 2, -1}).expand({B, 2, rope.size(-1)})
                                          : rope;
  return decode_core(x_in, w, groups, G, std::vector<int64_t>(B, i), n_heads, eps, scales, int8, rope_rows, false);
}

// B sequences, each with its own cache (rings[b * G + q], stores[b * G + q], each holding one
// sequence) at its own position pos[b]; ``rope`` empty or (B, 2, hd / 2). Float32 only; every
// linear weight comes transposed (in, out padded to 32; ``linear_rows``), so a row's logits do not
// depend on the other rows: a batch of one computes them bit for bit.
at::Tensor decode_rows(at::Tensor x_in, std::vector<at::Tensor> w, std::vector<int64_t> spec,
                       std::vector<at::Tensor> rings, std::vector<at::Tensor> stores, std::vector<int64_t> pos,
                       int64_t n_heads, std::vector<double> eps, std::vector<double> scales, at::Tensor rope) {
  at::NoGradGuard no_grad;
  const int64_t L = (int64_t)scales.size(), G = (int64_t)spec.size() / GROUP_INTS;
  check_inputs(x_in, w, L, G);
  const int64_t B = x_in.size(0);
  TORCH_CHECK((int64_t)pos.size() == B && (int64_t)rings.size() == B * G && (int64_t)stores.size() == B * G,
              "decode_rows: rows, positions, groups and stores do not match");
  std::vector<Group> groups;
  groups.reserve(B * G);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t q = 0; q < G; ++q)
      groups.push_back(group_of(spec.data() + q * GROUP_INTS, rings[b * G + q], stores[b * G + q], 1, 0));
  return decode_core(x_in, w, groups, G, pos, n_heads, eps, scales, false, rope, true);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("strided_forward", &strided_forward, "band + residue-class attention, forward");
  m.def("strided_backward", &strided_backward, "band + residue-class attention, backward");
  m.def("fixed_forward", &fixed_forward, "own block + summary columns attention, forward");
  m.def("fixed_backward", &fixed_backward, "own block + summary columns attention, backward");
  m.def("decode_step", &decode_step, "one cached decode step through every layer (every head group's near and far keys)",
        py::call_guard<py::gil_scoped_release>());
  m.def("decode_rows", &decode_rows, "one cached decode step of rows with their own caches and positions (weights "
        "transposed: decode_step.rows_weights)", py::call_guard<py::gil_scoped_release>());
  m.def("uses_blas", []() { return sgemm_ != nullptr; }, "whether GEMMs call the linked BLAS");
#ifdef INTRA_OP_PARALLEL
  m.def("threaded", []() { return true; }, "whether at::parallel_for runs on several threads here");
#else
  m.def("threaded", []() { return false; }, "whether at::parallel_for runs on several threads here");
#endif
  m.def("threads_used", [](int64_t items) {
    std::vector<char> seen(std::max(1, at::get_num_threads()), 0);
    at::parallel_for(0, items, 1, [&](int64_t, int64_t) { seen[at::get_thread_num()] = 1; });
    return (int64_t)std::count(seen.begin(), seen.end(), 1);
  }, "how many threads a parallel_for over `items` work items runs on (a test of the build)");
  m.def("set_share_min_work", [](int64_t work) { return share_min_work.exchange(work); },
        "the decode step's smallest shared loop in multiply-adds (returns the previous value)");
  m.def("share_helped", [](int64_t items) {
    // the decode step's loop sharing: item 0 waits (up to 5 s) until another thread has run an item
    const auto me = std::this_thread::get_id();
    std::atomic<int> others{0};
    share(items, [&](int64_t u0, int64_t) {
      if (std::this_thread::get_id() != me) others.fetch_add(1);
      if (u0 == 0 && at::get_num_threads() > 1)
        for (int t = 0; t < 5000 && others.load() == 0; ++t) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    return others.load() > 0;
  }, "whether a thread other than the caller ran items of a shared loop (a test of the decode step's pool)");
}
