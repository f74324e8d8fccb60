// Library-level throughput of the initiator (the counterpart of libiscsi's iscsi-perf):
//   iser-initiator-perf --portal 127.0.0.1:3260 --target IQN [--lun 0] [--qd 32]
//                       [--bs 4096] [--random] [--write] [--seconds 5]
// Prints "iops N (X MB/s)". Reads by default.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "iser/initiator/sync_initiator.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: iser-initiator-perf --portal HOST:PORT --target IQN [--lun N] [--qd N]"
               " [--bs BYTES] [--random] [--write] [--seconds N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace iser::initiator;
  SessionConfig config;
  uint64_t lun_number = 0;
  int qd = 32;
  size_t bs = 4096;
  bool random = false, write = false;
  int seconds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--random") {
      random = true;
    } else if (a == "--write") {
      write = true;
    } else if ((v = next()) == nullptr) {
      return Usage();
    } else if (a == "--portal") {
      config.portal = v;
    } else if (a == "--target") {
      config.target_name = v;
    } else if (a == "--lun") {
      lun_number = std::strtoull(v, nullptr, 10);
    } else if (a == "--qd") {
      qd = std::atoi(v);
    } else if (a == "--bs") {
      bs = std::strtoull(v, nullptr, 10);
    } else if (a == "--seconds") {
      seconds = std::atoi(v);
    } else {
      return Usage();
    }
  }
  if (config.portal.empty() || config.target_name.empty() || qd <= 0 || bs == 0) return Usage();
  auto ini = SyncInitiator::Connect(config);
  if (!ini.ok()) {
    std::fprintf(stderr, "login: %s\n", ini.status().ToString().c_str());
    return 1;
  }
  auto lun = (*ini)->OpenLun(lun_number);
  if (!lun.ok()) {
    std::fprintf(stderr, "LUN %llu: %s\n", static_cast<unsigned long long>(lun_number),
                 lun.status().ToString().c_str());
    return 1;
  }
  LunHandle* h = *lun;
  uint64_t blocks_per_io = bs / h->block_size();
  uint64_t slots = h->num_blocks() / blocks_per_io;
  if (blocks_per_io == 0 || slots == 0) return Usage();
  std::vector<std::vector<uint8_t>> bufs(qd, std::vector<uint8_t>(bs, 0x5a));
  std::mt19937_64 rng(42);
  uint64_t seq = 0;
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::atomic<int> active{qd};
  std::atomic<int> errors{0};
  std::function<void(int)> issue = [&](int slot) {
    if (stop) {
      --active;
      return;
    }
    uint64_t n = random ? rng() % slots : seq++ % slots;
    auto cb = [&, slot](absl::Status s) {
      if (!s.ok()) ++errors;
      ++done;
      issue(slot);
    };
    if (write) {
      h->Write(n * blocks_per_io, bufs[slot], cb);
    } else {
      h->Read(n * blocks_per_io, bufs[slot], cb);
    }
  };
  absl::Time start = absl::Now();
  (*ini)->RunOnLoop([&] {
    for (int i = 0; i < qd; ++i) issue(i);
  });
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  while (active > 0) absl::SleepFor(absl::Milliseconds(1));
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  double iops = static_cast<double>(done) / secs;
  std::printf("iops %.0f (%.1f MB/s) qd %d bs %zu %s %s errors %d\n", iops, iops * bs / 1e6, qd,
              bs, random ? "random" : "sequential", write ? "write" : "read", errors.load());
  return errors > 0 ? 1 : 0;
}
