// initiator-bench: library-level throughput of the built-in initiator (LunHandle at a
// fixed queue depth, no block device in between). For tests/bench/bench_initiator.sh.
//   initiator-bench --portal HOST:PORT --target IQN [--lun N] [--qd 32] [--bs 4096]
//                   [--rw randread|read|randwrite|write] [--seconds 5] [--span-mib N]
// Prints one line: "<rw> bs=<bs> qd=<qd>: <iops> IOPS <MB/s> MB/s <errors> errors".
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "iser/initiator/sync_initiator.h"

int main(int argc, char** argv) {
  iser::initiator::SessionConfig config;
  uint64_t lun_id = 0;
  int qd = 32;
  uint32_t bs = 4096;
  std::string rw = "randread";
  double seconds = 5;
  uint64_t span_mib = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--portal")
      config.portal = v;
    else if (a == "--target")
      config.target_name = v;
    else if (a == "--lun")
      lun_id = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--qd")
      qd = std::atoi(v.c_str());
    else if (a == "--bs")
      bs = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    else if (a == "--rw")
      rw = v;
    else if (a == "--seconds")
      seconds = std::atof(v.c_str());
    else if (a == "--span-mib")
      span_mib = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "initiator-bench: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  config.queue_depth = static_cast<uint32_t>(qd) * 2;
  auto init = iser::initiator::SyncInitiator::Connect(config);
  if (!init.ok()) {
    std::fprintf(stderr, "initiator-bench: %s\n", init.status().ToString().c_str());
    return 1;
  }
  auto lun = (*init)->OpenLun(lun_id);
  if (!lun.ok()) {
    std::fprintf(stderr, "initiator-bench: %s\n", lun.status().ToString().c_str());
    return 1;
  }
  iser::initiator::LunHandle* h = *lun;
  uint64_t span = h->capacity_bytes();
  if (span_mib > 0 && (span_mib << 20) < span) span = span_mib << 20;
  const uint64_t slots = span / bs;
  const bool write = rw == "randwrite" || rw == "write";
  const bool random = rw == "randread" || rw == "randwrite";

  struct State {
    std::vector<std::vector<uint8_t>> bufs;
    std::mt19937_64 rng{42};
    uint64_t next_seq = 0;
    uint64_t done_ios = 0;
    uint64_t errors = 0;
    int inflight = 0;
    absl::Time deadline;
    std::promise<void> finished;
  } st;
  st.bufs.assign(qd, std::vector<uint8_t>(bs, 0x5a));
  std::function<void(int)> issue = [&](int slot) {
    if (absl::Now() >= st.deadline) {
      if (--st.inflight == 0) st.finished.set_value();
      return;
    }
    uint64_t idx = random ? st.rng() % slots : (st.next_seq++ % slots);
    uint64_t off = idx * bs;
    auto cb = [&, slot](absl::Status s) {
      if (s.ok())
        ++st.done_ios;
      else
        ++st.errors;
      issue(slot);
    };
    if (write)
      h->WriteAt(off, st.bufs[slot], cb);
    else
      h->ReadAt(off, st.bufs[slot], cb);
  };
  absl::Time start = absl::Now();
  (*init)->RunOnLoop([&] {
    st.deadline = absl::Now() + absl::Seconds(seconds);
    st.inflight = qd;
    for (int s = 0; s < qd; ++s) issue(s);
  });
  st.finished.get_future().get();
  double el = absl::ToDoubleSeconds(absl::Now() - start);
  double iops = st.done_ios / el;
  std::printf("%s bs=%u qd=%d: %.0f IOPS %.1f MB/s %llu errors\n", rw.c_str(), bs, qd, iops,
              iops * bs / 1e6, static_cast<unsigned long long>(st.errors));
  return st.errors == 0 ? 0 : 1;
}
