// iser-target: the embedded iSCSI target as a standalone daemon.
//
//   iser-target --listen 127.0.0.1:3260 --target iqn.2026-11.org.iser-csi:demo \
//               --lun /var/lib/iser-csi/demo.img --size 1G
//
// SIGTERM/SIGINT: stop accepting, let in-flight commands finish (up to
// --drain-timeout), flush every LUN, exit 0.
#include <signal.h>
#include <sys/signalfd.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "iser/base/event_loop.h"
#include "iser/base/logging.h"
#include "iser/scsi/scsi_device.h"
#include "iser/store/sparse_file_store.h"
#include "iser/target/daemon/flags.h"
#include "iser/target/target.h"
#include "iser/transport/iser/iser_portal.h"

namespace iser::target {
namespace {

int Fail(const absl::Status& s, int code) {
  std::fprintf(stderr, "iser-target: %s\n", std::string(s.message()).c_str());
  return code;
}

// A stable 60-bit id per (target, LUN) for the NAA designator and serial number.
uint64_t LunId(const std::string& iqn, size_t lun) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : iqn) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  h = (h ^ lun) * 1099511628211ULL;
  return h & 0x0fffffffffffffffULL;
}

int Run(int argc, char** argv) {
  auto flags = ParseDaemonFlags(argc, argv);
  if (!flags.ok()) return Fail(flags.status(), 2);
  if (flags->help) {
    std::fputs(DaemonUsage(), stdout);
    return 0;
  }
  SetLogLevel(flags->log_level);
  signal(SIGPIPE, SIG_IGN);

  auto loop_or = EventLoop::Create();
  if (!loop_or.ok()) return Fail(loop_or.status(), 1);
  std::unique_ptr<EventLoop> loop = std::move(*loop_or);
  loop->set_busy_poll(flags->busy_poll);

  TargetOptions options;
  options.queue_depth = flags->queue_depth;
  options.offer.header_digest = options.offer.data_digest = flags->digests;
  if (flags->transport != "tcp") {
    // iSER (RFC 7145 sec 6.7): the initiator may have as many Sends in flight as each
    // connection posts receive buffers for. Declared only when RDMAExtensions=Yes.
    options.offer.target_max_outstanding_unexpected_pdus =
        iser_transport::IserConnectionOptions().recv_depth;
  }
  Target target(loop.get(), options);
  std::vector<std::shared_ptr<store::BlockStore>> stores;

  // Bind the portals first: a busy port fails before any LUN file is created.
  auto transport = iser_transport::ParsePortalTransport(flags->transport);
  if (!transport.ok()) return Fail(transport.status(), 2);
  std::vector<std::unique_ptr<iser_transport::Portal>> listeners;
  std::vector<login::PortalInfo> portals;
  for (const std::string& addr : flags->listen) {
    iser_transport::PortalOptions po;
    po.transport = *transport;
    po.softiwarp.crc = flags->mpa_crc;
    auto l = iser_transport::Portal::Create(loop.get(), &target, addr, po);
    if (!l.ok()) return Fail(l.status(), 1);
    portals.push_back({(*l)->address(), options.target_portal_group_tag});
    listeners.push_back(std::move(*l));
  }
  for (const TargetFlags& tf : flags->targets) {
    auto device = std::make_unique<scsi::Device>();
    for (size_t i = 0; i < tf.luns.size(); ++i) {
      const LunFlags& lf = tf.luns[i];
      store::SparseFileStore::Options so;
      so.size_bytes = lf.size_bytes;
      so.block_size = lf.block_size;
      so.read_only = lf.read_only;
      auto st = store::SparseFileStore::Open(lf.path, so);
      if (!st.ok()) return Fail(st.status(), 1);
      std::shared_ptr<store::BlockStore> shared = std::move(*st);
      scsi::LogicalUnitConfig lc;
      lc.naa_id = LunId(tf.iqn, i);
      lc.serial = absl::StrFormat("%016x", lc.naa_id);
      lc.target_name = tf.iqn;
      lc.read_only = lf.read_only;
      if (absl::Status s = device->AddLogicalUnit(i, shared, lc); !s.ok()) return Fail(s, 1);
      stores.push_back(shared);
      ISER_LOG(kInfo, "target %s lun %zu: %s (%llu bytes, %u-byte blocks%s)", tf.iqn, i, lf.path,
               static_cast<unsigned long long>(shared->size_bytes()), shared->block_size(),
               lf.read_only ? ", read-only" : "");
    }
    login::TargetNodeInfo info;
    info.name = tf.iqn;
    info.alias = tf.alias;
    info.chap = tf.chap;
    info.mutual_chap = tf.mutual_chap;
    info.allowed_initiators = tf.allowed_initiators;
    if (absl::Status s = target.AddNode(std::move(info), std::move(device)); !s.ok())
      return Fail(s, 1);
  }

  target.set_portals(portals);
  for (const auto& l : listeners) {
    ISER_LOG(kInfo, "listening on %s (%s)", l->address(),
             *transport == iser_transport::PortalTransport::kTcp    ? "iSCSI/TCP"
             : *transport == iser_transport::PortalTransport::kIser ? "iSER over software iWARP"
                                                                    : "iSCSI/TCP and iSER");
  }

  // Signals arrive through a signalfd so shutdown runs on the loop like everything else.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sfd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  bool stopping = false;
  absl::Status s = loop->AddFd(sfd.get(), EPOLLIN, [&](uint32_t) {
    signalfd_siginfo info;
    while (read(sfd.get(), &info, sizeof(info)) == sizeof(info)) {
    }
    if (stopping) return;
    stopping = true;
    ISER_LOG(kInfo, "signal received: draining %zu sessions", target.session_count());
    for (auto& l : listeners) l->Close();
    target.Drain(flags->drain_timeout, [&] {
      // Make every acknowledged write durable before exiting.
      auto pending = std::make_shared<size_t>(stores.size());
      if (*pending == 0) loop->Stop();
      for (auto& st : stores) {
        st->Flush([&loop, pending](absl::Status fs) {
          if (!fs.ok()) ISER_LOG(kError, "flush at shutdown: %s", std::string(fs.message()));
          if (--*pending == 0) loop->Stop();
        });
      }
    });
  });
  if (!s.ok()) return Fail(s, 1);

  std::vector<std::string> names;
  for (const auto& t : flags->targets) names.push_back(t.iqn);
  ISER_LOG(kInfo, "iser-target ready: %s", absl::StrJoin(names, ", "));
  loop->Run();
  loop->RemoveFd(sfd.get());
  ISER_LOG(kInfo, "iser-target stopped");
  return 0;
}

}  // namespace
}  // namespace iser::target

int main(int argc, char** argv) { return iser::target::Run(argc, argv); }
