// io_uring vs inline syscalls for reads served from the page cache.
//   store_bench --benchmark_min_time=0.5
// Ring/<bytes>/<queue depth>/<mode>: mode 0 = submit immediately, 1 = once per loop turn.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/store/sparse_file_store.h"
#include "iser/store/uring_ring.h"
#include "tests/iser/store/store_test_util.h"

namespace iser::store {
namespace {

constexpr uint64_t kFileSize = 64 << 20;
constexpr int kBatch = 4096;

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<SparseFileStore> store;
};

Fixture& Shared(bool use_io_uring) {
  static Fixture* uring = nullptr;
  static Fixture* inline_store = nullptr;
  Fixture*& f = use_io_uring ? uring : inline_store;
  if (f == nullptr) {
    f = new Fixture;
    SparseFileStore::Options o;
    o.size_bytes = kFileSize;
    o.use_io_uring = use_io_uring;
    f->store = std::move(*SparseFileStore::Open(f->dir.File("lun"), o));
    auto data = testing::Pattern(1 << 20, 1);
    for (uint64_t off = 0; off < kFileSize; off += data.size())
      f->store->Write(off, data, false, [](absl::Status) {});  // inline: no loop here
  }
  return *f;
}

void BM_ReadInline(benchmark::State& state) {
  const size_t len = state.range(0);
  SparseFileStore& store = *Shared(false).store;
  std::vector<uint8_t> buf(len);
  uint64_t off = 0;
  for (auto _ : state) {
    store.Read(off, buf, [](absl::Status s) { benchmark::DoNotOptimize(s); });
    off = (off + len) % kFileSize;
  }
  state.SetBytesProcessed(state.iterations() * len);
}
BENCHMARK(BM_ReadInline)->Arg(4096)->Arg(128 << 10);

// Keeps `depth` reads outstanding on a running loop until kBatch have completed.
void BM_ReadRing(benchmark::State& state) {
  const size_t len = state.range(0);
  const int depth = state.range(1);
  const auto mode =
      state.range(2) ? UringRing::SubmitMode::kPerIteration : UringRing::SubmitMode::kImmediate;
  SparseFileStore& store = *Shared(true).store;
  std::vector<std::vector<uint8_t>> bufs(depth, std::vector<uint8_t>(len));
  while (state.KeepRunningBatch(kBatch)) {
    auto loop = std::move(*EventLoop::Create());
    EventLoop* l = loop.get();
    int issued = 0, completed = 0;
    uint64_t off = 0;
    std::function<void(int)> issue = [&](int slot) {
      ++issued;
      store.Read(off, bufs[slot], [&, slot](absl::Status s) {
        if (!s.ok()) state.SkipWithError("read failed");
        if (++completed == kBatch) return l->Stop();
        if (issued < kBatch) issue(slot);
      });
      off = (off + len) % kFileSize;
    };
    l->Post([&] {
      UringRing::ForCurrentLoop()->set_submit_mode(mode);
      for (int i = 0; i < depth && issued < kBatch; ++i) issue(i);
    });
    l->Run();
  }
  state.SetBytesProcessed(state.iterations() * len);
}
BENCHMARK(BM_ReadRing)
    ->ArgNames({"bytes", "qd", "per_iter"})
    ->Args({4096, 1, 0})
    ->Args({4096, 1, 1})
    ->Args({4096, 32, 0})
    ->Args({4096, 32, 1})
    ->Args({128 << 10, 1, 0})
    ->Args({128 << 10, 1, 1})
    ->Args({128 << 10, 32, 0})
    ->Args({128 << 10, 32, 1});

}  // namespace
}  // namespace iser::store

BENCHMARK_MAIN();
