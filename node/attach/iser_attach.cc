// iser-attach: attach an iSCSI LUN through the built-in initiator and expose it as a
// block device (fuse_loop), kept alive by a background process.
//
//   iser-attach --portal 127.0.0.1:3260 --target IQN --lun 0
//               [--chap-user U --chap-secret S] [--mutual-chap-user U --mutual-chap-secret S]
//               [--transport iser|tcp|auto] [--state-dir DIR] [--log-file FILE] [--foreground]
//               [--replacement-timeout SECS] [--connections N] [--verbose]
//     Logs in, attaches the LUN, exposes it and prints the device path as its last line
//     once the device is ready. A background child keeps serving it (the parent exits 0
//     after the child reported the path); the attachment is recorded in the state dir.
//     --transport auto (the default) tries iSER and falls back to iSCSI/TCP; the line
//     before the device path says which transport the session got. --connections N
//     (1-8, default 1) opens N connections in the session (MC/S) if the target allows.
//   iser-attach --list [--state-dir DIR]
//   iser-attach --detach DEVICE [--state-dir DIR] [--timeout SECS]
//     Signals the serving process, which flushes, removes the device, unmounts FUSE,
//     logs out and removes the record; waits for that and exits 0.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "iser/base/logging.h"
#include "iser/initiator/sync_initiator.h"
#include "iser/transport/select/transport_select.h"
#include "node/attach/attachment_record.h"
#include "node/attach/lun_backend.h"
#include "node/exposure/fuse_loop/fuse_loop_exposure.h"

namespace iser::node {
namespace {

constexpr char kUsage[] =
    "usage: iser-attach --portal HOST:PORT --target IQN --lun N\n"
    "                   [--chap-user U --chap-secret S]\n"
    "                   [--mutual-chap-user U --mutual-chap-secret S]\n"
    "                   [--transport iser|tcp|auto] [--state-dir DIR] [--log-file FILE]\n"
    "                   [--foreground] [--replacement-timeout SECS] [--connections N]\n"
    "                   [--verbose]\n"
    "       iser-attach --list [--state-dir DIR]\n"
    "       iser-attach --detach DEVICE [--state-dir DIR] [--timeout SECS] [--force]\n";

struct Flags {
  enum class Mode { kAttach, kList, kDetach } mode = Mode::kAttach;
  std::string portal;
  std::string target;
  int64_t lun = -1;
  std::string chap_user, chap_secret, mutual_user, mutual_secret;
  std::string transport = "auto";
  std::string state_dir = kDefaultAttachmentStateDir;
  std::string log_file = "/dev/null";
  std::string device;  // --detach
  bool foreground = false;
  bool verbose = false;
  int replacement_timeout_s = 120;
  int connections = 1;
  int timeout_s = 60;
  bool force = false;
};

[[noreturn]] void Die(int code, const std::string& msg) {
  std::fprintf(stderr, "iser-attach: %s\n", msg.c_str());
  std::exit(code);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(2, absl::StrCat(a, " needs a value"));
      return argv[++i];
    };
    auto number = [&]() -> int64_t {
      std::string v = next();
      char* end = nullptr;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0) Die(2, absl::StrCat(a, " '", v, "': not a number"));
      return n;
    };
    if (a == "--portal") {
      f.portal = next();
    } else if (a == "--target") {
      f.target = next();
    } else if (a == "--lun") {
      f.lun = number();
    } else if (a == "--chap-user") {
      f.chap_user = next();
    } else if (a == "--chap-secret") {
      f.chap_secret = next();
    } else if (a == "--mutual-chap-user") {
      f.mutual_user = next();
    } else if (a == "--mutual-chap-secret") {
      f.mutual_secret = next();
    } else if (a == "--transport") {
      f.transport = next();
    } else if (a == "--state-dir") {
      f.state_dir = next();
    } else if (a == "--log-file") {
      f.log_file = next();
    } else if (a == "--foreground") {
      f.foreground = true;
    } else if (a == "--verbose") {
      f.verbose = true;
    } else if (a == "--replacement-timeout") {
      f.replacement_timeout_s = static_cast<int>(number());
    } else if (a == "--connections") {
      f.connections = static_cast<int>(number());
      if (f.connections < 1 || f.connections > 8) Die(2, "--connections: want 1 to 8");
    } else if (a == "--timeout") {
      f.timeout_s = static_cast<int>(number());
    } else if (a == "--force") {
      f.force = true;
    } else if (a == "--list") {
      list = true;
    } else if (a == "--detach") {
      f.device = next();
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      std::fputs(kUsage, stderr);
      Die(2, absl::StrCat("unknown argument '", a, "'"));
    }
  }
  if (list && !f.device.empty()) Die(2, "--list and --detach are exclusive");
  if (list) {
    f.mode = Flags::Mode::kList;
    return f;
  }
  if (!f.device.empty()) {
    f.mode = Flags::Mode::kDetach;
    return f;
  }
  if (absl::Status s = transport::ParseTransportChoice(f.transport).status(); !s.ok()) {
    Die(2, absl::StrCat("--transport: ", s.message()));
  }
  if (f.portal.empty() || f.target.empty() || f.lun < 0) {
    std::fputs(kUsage, stderr);
    Die(2, "--portal, --target and --lun are required");
  }
  if (f.portal.find(':') == std::string::npos) f.portal += ":3260";
  if (f.chap_user.empty() != f.chap_secret.empty()) {
    Die(2, "--chap-user and --chap-secret go together");
  }
  if (f.mutual_user.empty() != f.mutual_secret.empty()) {
    Die(2, "--mutual-chap-user and --mutual-chap-secret go together");
  }
  if (!f.mutual_user.empty() && f.chap_user.empty()) {
    Die(2, "mutual CHAP needs --chap-user/--chap-secret too");
  }
  return f;
}

bool Alive(int64_t pid) {
  if (pid <= 0 || kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(in, line);
  size_t p = line.rfind(')');
  return p == std::string::npos || p + 2 >= line.size() || line[p + 2] != 'Z';
}

// Where `device` is mounted, or "" if it is not.
std::string MountPointOf(const std::string& device) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, rest;
  while (in >> dev >> dir && std::getline(in, rest)) {
    if (dev == device) return dir;
  }
  return "";
}

std::string NowUtc() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%012llx", static_cast<unsigned long long>(v));
  return buf;
}

// One-line, human-oriented explanation of a login / attach failure.
std::string Explain(const Flags& f, const absl::Status& s) {
  std::string why(s.message());
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return absl::StrCat("cannot reach portal ", f.portal, ": ", why);
    case absl::StatusCode::kUnauthenticated:
      return absl::StrCat("authentication failed at ", f.portal, " (check the CHAP user and ",
                          "secret): ", why);
    case absl::StatusCode::kNotFound:
      if (why.find("LUN") != std::string::npos) {
        return absl::StrCat("target ", f.target, " has no LUN ", f.lun, ": ", why);
      }
      return absl::StrCat("no target ", f.target, " at ", f.portal, ": ", why);
    case absl::StatusCode::kPermissionDenied:
      return absl::StrCat("target ", f.target, " refused this initiator: ", why);
    default:
      return absl::StrCat("attach failed: ", s.ToString());
  }
}

// "OK <transport> <device>" from the serving process, as the caller sees it: the
// transport on one line, the device path on the last.
void PrintAttached(std::string ok_payload) {
  while (!ok_payload.empty() && ok_payload.back() == '\n') ok_payload.pop_back();
  size_t space = ok_payload.find(' ');
  if (space != std::string::npos) {
    std::printf("transport: %s\n", ok_payload.substr(0, space).c_str());
    ok_payload = ok_payload.substr(space + 1);
  }
  std::printf("%s\n", ok_payload.c_str());
}

// Sends one line to the parent (or stdout in the foreground) and closes the channel.
void Report(int fd, const std::string& line) {
  std::string l = line + "\n";
  (void)!write(fd, l.data(), l.size());
  if (fd > 2) close(fd);
}

// The attachment record once written, kept in step with the session's transport: with
// transport auto, a reinstatement after a lost connection may come up over the other
// transport, and --list must say which one the device is using now. Called from the
// session's loop (on_logged_in) and from Serve.
class RecordKeeper {
 public:
  explicit RecordKeeper(std::string dir) : dir_(std::move(dir)) {}
  void Written(const AttachmentRecord& rec) {
    std::lock_guard<std::mutex> lock(mu_);
    rec_ = rec;
  }
  void TransportIs(initiator::InitiatorTransportKind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string name = initiator::TransportKindName(kind);
    if (!rec_ || rec_->transport == name) return;
    ISER_LOG(kInfo, "%s: the session now runs over %s (was %s)", rec_->device.c_str(), name.c_str(),
             rec_->transport.c_str());
    rec_->transport = name;
    if (absl::Status s = WriteRecord(dir_, *rec_); !s.ok())
      ISER_LOG(kWarning, "updating the attachment record: %s", s.ToString().c_str());
  }

 private:
  std::mutex mu_;
  std::string dir_;
  std::optional<AttachmentRecord> rec_;  // unset until the first record is written
};

// The serving process: attach, expose, record, wait for a signal, detach.
int Serve(const Flags& f, int report_fd) {
  // A caller that went away before the report must not kill the attachment (the record
  // is written by then; --list / --detach find it).
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  initiator::SessionConfig config;
  config.portal = f.portal;
  config.target_name = f.target;
  config.chap = {f.chap_user, f.chap_secret};
  config.mutual_chap = {f.mutual_user, f.mutual_secret};
  config.replacement_timeout = absl::Seconds(f.replacement_timeout_s);
  config.connections = static_cast<uint32_t>(f.connections);
  config.transport_factory =
      transport::InitiatorTransportFactory(*transport::ParseTransportChoice(f.transport));
  auto keeper = std::make_shared<RecordKeeper>(f.state_dir);
  config.on_logged_in = [keeper](initiator::InitiatorTransportKind kind) {
    keeper->TransportIs(kind);
  };
  absl::StatusOr<std::unique_ptr<initiator::SyncInitiator>> init =
      initiator::SyncInitiator::Connect(config);
  if (!init.ok()) {
    Report(report_fd, "ERR " + Explain(f, init.status()));
    return 1;
  }
  absl::StatusOr<initiator::LunHandle*> lun = (*init)->OpenLun(static_cast<uint64_t>(f.lun));
  if (!lun.ok()) {
    absl::Status s = lun.status();
    if (s.code() == absl::StatusCode::kNotFound) {
      Report(report_fd, absl::StrCat("ERR target ", f.target, " has no LUN ", f.lun, ": ",
                                     std::string(s.message())));
    } else if (s.code() == absl::StatusCode::kInvalidArgument) {
      // E.g. tgt's LUN 0, the controller: TEST UNIT READY passes, READ CAPACITY does not.
      Report(report_fd, absl::StrCat("ERR target ", f.target, " LUN ", f.lun,
                                     " is not a block device (READ CAPACITY refused): ",
                                     std::string(s.message())));
    } else {
      Report(report_fd, "ERR " + Explain(f, s));
    }
    return 1;
  }
  absl::StatusOr<std::unique_ptr<LunBackend>> backend = LunBackend::Create((*init)->loop(), *lun);
  if (!backend.ok()) {
    Report(report_fd, absl::StrCat("ERR LUN ", f.lun, ": ", backend.status().ToString()));
    return 1;
  }
  FuseLoopExposure exposure;
  std::string name = absl::StrCat(f.target, ":", f.lun);
  absl::StatusOr<std::unique_ptr<FuseLoopDevice>> dev =
      exposure.ExposeFuseLoop(**backend, {.name = name});
  if (!dev.ok()) {
    Report(report_fd, absl::StrCat("ERR exposing the LUN: ", dev.status().ToString()));
    return 1;
  }
  FuseLoopHandles h = (*dev)->handles();
  AttachmentRecord rec;
  rec.device = (*dev)->device_path();
  rec.portal = f.portal;
  rec.target = f.target;
  rec.lun = static_cast<uint64_t>(f.lun);
  (*init)->RunOnLoop([&] { rec.transport = (*init)->session()->transport_name(); });
  rec.pid = getpid();
  rec.size_bytes = (*backend)->size_bytes();
  rec.block_size = (*backend)->block_size();
  initiator::SessionState st;
  (*init)->RunOnLoop([&] { st = (*init)->session()->state(); });
  rec.isid = Hex(st.isid);
  rec.tsih = st.tsih;
  rec.fuse_mount_dir = h.mount_dir;
  rec.fuse_file = h.file_path;
  struct stat mst;
  if (stat(h.mount_dir.c_str(), &mst) == 0 && major(mst.st_dev) == 0) {
    rec.fuse_connection = minor(mst.st_dev);
  }
  rec.fuse_fd = h.fuse_fd;
  rec.loop_fd = h.loop_fd;
  rec.started = NowUtc();
  if (absl::Status s = WriteRecord(f.state_dir, rec); !s.ok()) {
    (void)(*dev)->Detach();
    Report(report_fd, absl::StrCat("ERR recording the attachment: ", s.ToString()));
    return 1;
  }
  keeper->Written(rec);
  // A reinstatement between reading the transport above and now is caught here.
  (*init)->RunOnLoop([&] {
    if (auto kind = (*init)->session()->transport_kind()) keeper->TransportIs(*kind);
  });
  std::string record_path = RecordPath(f.state_dir, rec.device);
  std::string error_path = record_path + ".detach-error";
  unlink(error_path.c_str());
  ISER_LOG(kInfo, "attached %s LUN %llu at %s over %s as %s (%llu bytes, block %u, pid %d)",
           f.target.c_str(), static_cast<unsigned long long>(f.lun), f.portal.c_str(),
           rec.transport.c_str(), rec.device.c_str(),
           static_cast<unsigned long long>(rec.size_bytes), rec.block_size,
           static_cast<int>(getpid()));
  Report(report_fd, absl::StrCat("OK ", rec.transport, " ", rec.device));

  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    ISER_LOG(kInfo, "signal %d: detaching %s", sig, rec.device.c_str());
    absl::Status s = (*dev)->Detach();
    if (s.ok()) break;
    ISER_LOG(kError, "detach %s: %s", rec.device.c_str(), s.ToString().c_str());
    std::ofstream(error_path) << s.message() << "\n";
    if (s.code() != absl::StatusCode::kFailedPrecondition) break;  // in use: keep serving
  }
  dev->reset();
  absl::Status out = (*init)->Logout();
  if (!out.ok()) ISER_LOG(kWarning, "logout: %s", out.ToString().c_str());
  init->reset();
  unlink(record_path.c_str());
  ISER_LOG(kInfo, "detached %s", rec.device.c_str());
  return 0;
}

int Attach(const Flags& f) {
  if (geteuid() != 0) Die(1, "must run as root (FUSE mount and loop devices)");
  if (f.verbose) SetLogLevel(LogLevel::kDebug);
  if (absl::Status s = MakeDirs(f.state_dir); !s.ok()) Die(1, std::string(s.message()));
  if (f.foreground) {
    // Block the signals Serve() waits for before the printer thread exists.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) Die(1, "pipe failed");
    std::thread printer([r = fds[0]] {
      std::string all;
      char buf[512];
      ssize_t n;
      while ((n = read(r, buf, sizeof(buf))) > 0) all.append(buf, n);
      close(r);
      if (all.rfind("OK ", 0) == 0) {
        PrintAttached(all.substr(3));
      } else if (all.rfind("ERR ", 0) == 0) {
        std::fprintf(stderr, "iser-attach: %s", all.c_str() + 4);
      }
      std::fflush(stdout);
    });
    int rc = Serve(f, fds[1]);
    printer.join();
    return rc;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) Die(1, "pipe failed");
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) Die(1, absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    close(fds[0]);
    setsid();
    // Detach from the caller's terminal and pipes (a script reading our output must
    // see EOF when the parent exits); logs go to --log-file.
    int null = open("/dev/null", O_RDWR);
    int log = open(f.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0) log = dup(null);
    dup2(null, 0);
    dup2(log, 1);
    dup2(log, 2);
    if (null > 2) close(null);
    if (log > 2) close(log);
    // Keep only stdio and the report pipe (moved to fd 3): a caller's pipes must not
    // stay open in the daemon.
    int report = fds[1];
    if (report != 3) {
      dup2(report, 3);
      close(report);
      report = 3;
    }
    close_range(4, ~0U, 0);
    fds[1] = report;
    if (chdir("/") != 0) {
    }
    std::_Exit(Serve(f, fds[1]));
  }
  close(fds[1]);
  std::string all;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) all.append(buf, n);
  }
  close(fds[0]);
  while (!all.empty() && all.back() == '\n') all.pop_back();
  if (all.rfind("OK ", 0) == 0) {
    PrintAttached(all.substr(3));
    return 0;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (all.rfind("ERR ", 0) == 0) Die(1, all.substr(4));
  Die(1, absl::StrCat("the attaching process died before the device was ready (status ", status,
                      "); see ", f.log_file));
}

int List(const Flags& f) {
  std::vector<AttachmentRecord> recs = ListRecords(f.state_dir);
  if (recs.empty()) {
    std::printf("no attachments (%s)\n", f.state_dir.c_str());
    return 0;
  }
  std::printf("%-12s %-22s %-44s %4s %-9s %10s %8s %-8s %s\n", "DEVICE", "PORTAL", "TARGET", "LUN",
              "TRANSPORT", "SIZE", "PID", "STATE", "MOUNTED");
  for (const AttachmentRecord& r : recs) {
    std::string mp = MountPointOf(r.device);
    std::printf("%-12s %-22s %-44s %4llu %-9s %9lluM %8lld %-8s %s\n", r.device.c_str(),
                r.portal.c_str(), r.target.c_str(), static_cast<unsigned long long>(r.lun),
                r.transport.c_str(), static_cast<unsigned long long>(r.size_bytes >> 20),
                static_cast<long long>(r.pid), Alive(r.pid) ? "serving" : "stale",
                mp.empty() ? "-" : mp.c_str());
  }
  return 0;
}

// Aborts the attachment's FUSE connection (fusectl), so that a serving process stuck
// behind its own device (or gone) stops holding I/O, then removes what is left.
void ForceCleanup(const AttachmentRecord& rec, const std::string& record_path) {
  if (rec.fuse_connection != 0) {
    std::string conn = absl::StrCat("/sys/fs/fuse/connections/", rec.fuse_connection);
    struct stat sb;
    if (stat(conn.c_str(), &sb) != 0) {
      mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
    }
    std::ofstream(conn + "/abort") << "1";
  }
  if (Alive(rec.pid)) kill(static_cast<pid_t>(rec.pid), SIGKILL);
  for (int i = 0; i < 250 && Alive(rec.pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!rec.fuse_mount_dir.empty()) {
    umount2(rec.fuse_mount_dir.c_str(), MNT_DETACH);
    rmdir(rec.fuse_mount_dir.c_str());
  }
  unlink(record_path.c_str());
  unlink((record_path + ".detach-error").c_str());
}

int Detach(const Flags& f) {
  std::string device = f.device;
  if (device.find('/') == std::string::npos) device = "/dev/" + device;
  std::string path = RecordPath(f.state_dir, device);
  absl::StatusOr<AttachmentRecord> rec = ReadRecord(path);
  if (!rec.ok()) {
    if (rec.status().code() == absl::StatusCode::kNotFound) {
      Die(1, absl::StrCat(device, " is not attached by iser-attach (no ", path, ")"));
    }
    Die(1, std::string(rec.status().message()));
  }
  if (!Alive(rec->pid)) {
    ForceCleanup(*rec, path);
    std::fprintf(stderr, "iser-attach: %s: serving process %lld is gone; cleaned up after it\n",
                 device.c_str(), static_cast<long long>(rec->pid));
    return 0;
  }
  std::string mp = MountPointOf(device);
  if (!mp.empty()) Die(1, absl::StrCat(device, " is mounted at ", mp, "; unmount it first"));
  std::string error_path = path + ".detach-error";
  unlink(error_path.c_str());
  if (kill(static_cast<pid_t>(rec->pid), SIGTERM) != 0) {
    Die(1, absl::StrCat("signal pid ", rec->pid, ": ", std::strerror(errno)));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(f.timeout_s);
  std::string why;
  while (std::chrono::steady_clock::now() < deadline) {
    struct stat sb;
    bool record_gone = stat(path.c_str(), &sb) != 0;
    if (record_gone && !Alive(rec->pid)) return 0;
    if (stat(error_path.c_str(), &sb) == 0) {
      std::ifstream in(error_path);
      std::getline(in, why);
      unlink(error_path.c_str());
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (why.empty()) {
    why = absl::StrCat("pid ", rec->pid, " did not finish within ", f.timeout_s, " s");
  }
  if (f.force) {
    ForceCleanup(*rec, path);
    std::fprintf(stderr,
                 "iser-attach: detach %s: %s; forced (FUSE connection aborted, pid %lld "
                 "killed)\n",
                 device.c_str(), why.c_str(), static_cast<long long>(rec->pid));
    return 0;
  }
  Die(1, absl::StrCat("detach ", device, ": ", why, " (--force aborts it)"));
}

}  // namespace
}  // namespace iser::node

int main(int argc, char** argv) {
  using iser::node::Flags;
  Flags f = iser::node::ParseFlags(argc, argv);
  switch (f.mode) {
    case Flags::Mode::kList:
      return iser::node::List(f);
    case Flags::Mode::kDetach:
      return iser::node::Detach(f);
    case Flags::Mode::kAttach:
      break;
  }
  return iser::node::Attach(f);
}
