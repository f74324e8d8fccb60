// initiator-bench: library-level throughput and latency of the built-in initiator
// (LunHandle at a fixed queue depth, no block device in between). For
// tests/bench/bench_initiator.sh and tests/bench/bench_iser_eval.sh.
//   initiator-bench --portal HOST:PORT --target IQN [--lun N] [--qd 32] [--bs 4096]
//                   [--rw randread|read|randwrite|write] [--seconds 5] [--span-mib N]
//                   [--transport tcp|iser|auto] [--immediate-data yes|no]
//                   [--initial-r2t yes|no] [--sessions N] [--connections N]
//                   [--mpa-crc yes|no] [--digest none|crc32c] [--cpu-pid PID]
// Prints two lines: "<rw> bs=<bs> qd=<qd>: <iops> IOPS <MB/s> MB/s <errors> errors" (what
// bench_initiator.sh parses) and one machine-readable line of key=value pairs:
//   RESULT transport=tcp sessions=1 connections=1 ... iops= mbps= lat_mean_us= lat_p50_us=
//   lat_p99_us=
//          cpu_s= peer_cpu_s= host_busy_s= host_irq_s= ncpu= bytes=
// cpu_s is this process's user+system time over the measured interval (getrusage, all
// threads); peer_cpu_s is the same for --cpu-pid (the target, read from /proc at the same
// instants, so login and logout are not counted for either side); host_busy_s is the
// process time of all CPUs over the same interval (/proc/stat: user, nice, system,
// steal), host_irq_s their irq + softirq time, ncpu the CPU count.
//
// --sessions N opens N independent sessions (each its own random ISID, its own loop
// thread) to the same LUN and splits the queue depth over them. --connections N opens N
// connections in each session (MC/S: one loop thread, commands round robin over the
// connections); RESULT's connections= is what the target allowed (per session).
//
// --digest crc32c offers HeaderDigest and DataDigest CRC32C (RFC 7143 sec 13.1) on a TCP
// session, the iSCSI/TCP counterpart of MPA's CRC32C; RESULT's digest= is what was
// negotiated (an iSER session always has none: RFC 7145 sec 6.3 forbids them there).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "iser/initiator/sync_initiator.h"
#include "iser/transport/select/transport_select.h"

namespace {

using Clock = std::chrono::steady_clock;

// The one place that maps --transport to a factory (the same words as iser-attach).
absl::StatusOr<iser::initiator::TransportFactory> TransportFactoryFor(const std::string& name,
                                                                      bool mpa_crc) {
  absl::StatusOr<iser::transport::TransportChoice> choice =
      iser::transport::ParseTransportChoice(name);
  if (!choice.ok()) return choice.status();
  iser::transport::TransportSelectOptions options;
  options.iser.softiwarp.crc = mpa_crc;
  return iser::transport::InitiatorTransportFactory(*choice, options);
}

bool ParseYesNo(const std::string& v, bool* out) {
  if (v == "yes") {
    *out = true;
    return true;
  }
  if (v == "no") {
    *out = false;
    return true;
  }
  return false;
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime + stime of another process (all its threads), or -1 if it cannot be read.
double PidCpuSeconds(int pid) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return -1;
  // The command name (field 2) may contain spaces: fields are counted after its ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

// CPU seconds of the whole machine (all CPUs) from /proc/stat: process time (user, nice,
// system, steal) and interrupt time (irq, softirq) apart. With our two processes' times
// the first tells how much of the machine other processes used during a measurement;
// interrupt time is kept out of it because on loopback most of it is the TCP receive
// work of our own traffic (large for 128 KiB transfers), which no process is charged for.
struct HostCpu {
  double busy = -1;
  double irq = -1;
};
HostCpu HostCpuSeconds() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};
  if (!(f >> cpu) || cpu != "cpu") return {};
  for (auto& x : v) f >> x;
  // user nice system idle iowait irq softirq steal
  const double hz = sysconf(_SC_CLK_TCK);
  return {static_cast<double>(v[0] + v[1] + v[2] + v[7]) / hz,
          static_cast<double>(v[5] + v[6]) / hz};
}

// One session's share of the run: its own initiator (loop thread), LUN and slots. All
// fields but `finished` are touched only on that session's loop thread.
struct Worker {
  std::unique_ptr<iser::initiator::SyncInitiator> init;
  iser::initiator::LunHandle* lun = nullptr;
  int qd = 0;
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<Clock::time_point> issued_at;
  std::vector<uint32_t> lat_ns;  // one per completed I/O, kept for exact percentiles
  std::mt19937_64 rng;
  uint64_t next_seq = 0;
  uint64_t done_ios = 0;
  uint64_t errors = 0;
  int inflight = 0;
  Clock::time_point deadline;
  std::promise<void> finished;
};

}  // namespace

int main(int argc, char** argv) {
  iser::initiator::SessionConfig config;
  uint64_t lun_id = 0;
  int qd = 32;
  uint32_t bs = 4096;
  std::string rw = "randread";
  std::string transport = "tcp";
  double seconds = 5;
  uint64_t span_mib = 0;
  int sessions = 1;
  int connections = 1;
  bool mpa_crc = true;
  int cpu_pid = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    bool ok = true;
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
    else if (a == "--transport")
      transport = v;
    else if (a == "--immediate-data")
      ok = ParseYesNo(v, &config.immediate_data);
    else if (a == "--initial-r2t")
      ok = ParseYesNo(v, &config.initial_r2t);
    else if (a == "--sessions")
      sessions = std::atoi(v.c_str());
    else if (a == "--connections")
      connections = std::atoi(v.c_str());
    else if (a == "--mpa-crc")
      ok = ParseYesNo(v, &mpa_crc);
    else if (a == "--digest") {
      ok = v == "none" || v == "crc32c";
      config.header_digest = config.data_digest = v == "crc32c";
    } else if (a == "--cpu-pid")
      cpu_pid = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "initiator-bench: unknown argument %s\n", a.c_str());
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "initiator-bench: %s does not take %s\n", a.c_str(), v.c_str());
      return 2;
    }
  }
  if (qd < 1 || sessions < 1 || sessions > qd || connections < 1 || bs == 0 || seconds <= 0 ||
      (rw != "randread" && rw != "read" && rw != "randwrite" && rw != "write")) {
    std::fprintf(stderr,
                 "initiator-bench: need qd >= sessions >= 1, connections >= 1, bs > 0, "
                 "seconds > 0 and --rw randread|read|randwrite|write\n");
    return 2;
  }
  absl::StatusOr<iser::initiator::TransportFactory> factory =
      TransportFactoryFor(transport, mpa_crc);
  if (!factory.ok()) {
    std::fprintf(stderr, "initiator-bench: %s\n", factory.status().ToString().c_str());
    return 2;
  }
  config.transport_factory = *factory;
  config.connections = static_cast<uint32_t>(connections);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < sessions; ++i) {
    auto w = std::make_unique<Worker>();
    // The queue depth is split, not multiplied, so rows with 1 and N sessions compare the
    // same number of I/Os in flight.
    w->qd = qd / sessions + (i < qd % sessions ? 1 : 0);
    iser::initiator::SessionConfig c = config;
    c.queue_depth = static_cast<uint32_t>(w->qd) * 2;
    auto init = iser::initiator::SyncInitiator::Connect(c);
    if (!init.ok()) {
      std::fprintf(stderr, "initiator-bench: session %d: %s\n", i,
                   init.status().ToString().c_str());
      return 1;
    }
    w->init = std::move(*init);
    auto lun = w->init->OpenLun(lun_id);
    if (!lun.ok()) {
      std::fprintf(stderr, "initiator-bench: %s\n", lun.status().ToString().c_str());
      return 1;
    }
    w->lun = *lun;
    w->rng.seed(42 + i);
    w->bufs.assign(w->qd, std::vector<uint8_t>(bs, 0x5a));
    w->issued_at.resize(w->qd);
    workers.push_back(std::move(w));
  }
  // What was negotiated, not what was asked for: the target may refuse either proposal,
  // and "auto" may have fallen back to TCP.
  iser::login::OperationalParams params;
  std::string got_transport;
  size_t got_connections = 0;
  workers[0]->init->RunOnLoop([&] {
    const iser::initiator::Session* s = workers[0]->init->session();
    params = s->params();
    got_transport = s->transport_name();
    got_connections = s->connection_count();
  });

  uint64_t span = workers[0]->lun->capacity_bytes();
  if (span_mib > 0 && (span_mib << 20) < span) span = span_mib << 20;
  const uint64_t slots = span / bs;
  if (slots == 0) {
    std::fprintf(stderr, "initiator-bench: LUN smaller than one block of %u bytes\n", bs);
    return 1;
  }
  const bool write = rw == "randwrite" || rw == "write";
  const bool random = rw == "randread" || rw == "randwrite";
  for (int i = 0; i < sessions; ++i) {
    Worker* w = workers[i].get();
    // Sequential streams of different sessions start apart instead of on the same blocks.
    w->next_seq = slots / sessions * i;
    w->lat_ns.reserve(
        std::min<uint64_t>(static_cast<uint64_t>(seconds * 400000 / sessions), 64 << 20));
  }

  std::function<void(Worker*, int)> issue = [&](Worker* w, int slot) {
    Clock::time_point now = Clock::now();
    if (now >= w->deadline) {
      if (--w->inflight == 0) w->finished.set_value();
      return;
    }
    uint64_t idx = random ? w->rng() % slots : (w->next_seq++ % slots);
    uint64_t off = idx * bs;
    w->issued_at[slot] = now;
    auto cb = [&, w, slot](absl::Status s) {
      if (s.ok()) {
        ++w->done_ios;
        auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - w->issued_at[slot]);
        w->lat_ns.push_back(static_cast<uint32_t>(std::min<int64_t>(ns.count(), UINT32_MAX)));
      } else {
        ++w->errors;
      }
      issue(w, slot);
    };
    if (write)
      w->lun->WriteAt(off, w->bufs[slot], cb);
    else
      w->lun->ReadAt(off, w->bufs[slot], cb);
  };

  const double cpu0 = SelfCpuSeconds();
  const double peer0 = PidCpuSeconds(cpu_pid);
  const HostCpu host0 = HostCpuSeconds();
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (auto& w : workers) {
    Worker* raw = w.get();
    raw->init->RunOnLoop([&, raw] {
      raw->deadline = deadline;
      raw->inflight = raw->qd;
      for (int s = 0; s < raw->qd; ++s) issue(raw, s);
    });
  }
  for (auto& w : workers) w->finished.get_future().get();
  const double el = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = SelfCpuSeconds() - cpu0;
  const double peer1 = PidCpuSeconds(cpu_pid);
  const HostCpu host1 = HostCpuSeconds();
  const double host = host1.busy - host0.busy;
  const double host_irq = host1.irq - host0.irq;
  const double peer_cpu = (peer0 >= 0 && peer1 >= 0) ? peer1 - peer0 : -1;

  uint64_t ios = 0, errors = 0;
  std::vector<uint32_t> lat;
  for (auto& w : workers) {
    ios += w->done_ios;
    errors += w->errors;
    lat.insert(lat.end(), w->lat_ns.begin(), w->lat_ns.end());
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) -> double {
    if (lat.empty()) return 0;
    size_t i = static_cast<size_t>(p * (lat.size() - 1) + 0.5);
    return lat[i] / 1e3;
  };
  double mean_us = 0;
  for (uint32_t v : lat) mean_us += v;
  if (!lat.empty()) mean_us /= lat.size() * 1e3;

  const double iops = ios / el;
  const uint64_t bytes = ios * bs;
  std::printf("%s bs=%u qd=%d: %.0f IOPS %.1f MB/s %llu errors\n", rw.c_str(), bs, qd, iops,
              bytes / el / 1e6, static_cast<unsigned long long>(errors));
  std::printf(
      "RESULT transport=%s sessions=%d connections=%zu rw=%s bs=%u qd=%d immediate_data=%s "
      "initial_r2t=%s digest=%s "
      "ios=%llu errors=%llu seconds=%.3f iops=%.0f mbps=%.1f lat_mean_us=%.1f "
      "lat_p50_us=%.1f lat_p99_us=%.1f cpu_s=%.3f peer_cpu_s=%.3f host_busy_s=%.3f host_irq_s=%.3f "
      "ncpu=%ld "
      "bytes=%llu\n",
      got_transport.c_str(), sessions, got_connections, rw.c_str(), bs, qd,
      params.immediate_data ? "yes" : "no", params.initial_r2t ? "yes" : "no",
      params.header_digest && params.data_digest ? "crc32c" : "none",
      static_cast<unsigned long long>(ios), static_cast<unsigned long long>(errors), el, iops,
      bytes / el / 1e6, mean_us, pct(0.50), pct(0.99), cpu, peer_cpu, host, host_irq,
      sysconf(_SC_NPROCESSORS_ONLN), static_cast<unsigned long long>(bytes));
  std::fflush(stdout);
  return errors == 0 ? 0 : 1;
}
