// Shared by the stand-in CUDA libraries (see README.md): the emulated-module cache that links the
// stand-in NVRTC (which builds modules) to the stand-in driver (which loads them), and the
// internal entry points the driver offers the stand-in cuBLAS/cuBLASLt.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

#define LFEMU_API extern "C" __attribute__((visibility("default")))

extern char** environ;

namespace lfemu
{
// Two FNV-1a 64 streams with different offsets: a 128-bit content key (not cryptographic; it
// names cache entries made by this machine's own builds).
struct Hasher
{
    uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
    void bytes(const void* p, size_t n)
    {
        auto* c = (const unsigned char*)p;
        for (size_t i = 0; i < n; i++)
        {
            a = (a ^ c[i]) * 0x100000001b3ull;
            b = (b ^ c[i]) * 0x100000001b3ull + 0x9e37;
        }
    }
    void field(const std::string& s)
    {
        uint64_t n = s.size();
        bytes(&n, 8);
        bytes(s.data(), s.size());
    }
    std::string hex() const
    {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
        return buf;
    }
};

inline std::string hash_bytes(const void* p, size_t n)
{
    Hasher h;
    h.bytes(p, n);
    return h.hex();
}

inline bool read_file(const std::string& path, std::string& out)
{
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    out.clear();
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
    return true;
}

inline bool write_file(const std::string& path, const std::string& data)
{
    std::string tmp = path + "." + std::to_string(getpid()) + "." + std::to_string((unsigned long)gettid()) + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) return false;
    bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
    ok = std::fclose(f) == 0 && ok;
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    {
        unlink(tmp.c_str());
        return false;
    }
    return true;
}

inline void mkdirs(const std::string& path)
{
    for (size_t i = 1; i <= path.size(); i++)
        if (i == path.size() || path[i] == '/') mkdir(path.substr(0, i).c_str(), 0755);
}

inline bool exists(const std::string& p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

// LAYERFUSION_EMU_CACHE, else $XDG_CACHE_HOME/layerfusion/emulator, else ~/.cache/layerfusion/emulator.
inline std::string cache_dir()
{
    if (const char* e = std::getenv("LAYERFUSION_EMU_CACHE"); e && *e) return e;
    std::string root;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) root = x;
    else if (const char* h = std::getenv("HOME"); h && *h) root = std::string(h) + "/.cache";
    else root = "/tmp";
    return root + "/layerfusion/emulator";
}

// Runs argv with stdout+stderr appended to `log`; returns the exit status (-1: could not start).
inline int run(const std::vector<std::string>& argv, std::string& log)
{
    std::string out = cache_dir() + "/run." + std::to_string(getpid()) + "." + std::to_string((unsigned long)gettid()) + ".log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid;
    int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
    {
        log += "cannot start " + argv[0] + ": " + std::strerror(rc) + "\n";
        return -1;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    std::string text;
    read_file(out, text);
    unlink(out.c_str());
    log += text;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// ---- emulated modules --------------------------------------------------------------------
// A module is the kernel source, its headers and the -D/-U/-I options NVRTC received, built by g++
// against tests/kernel-emulation/prior_ptx_emu.hpp (which includes cuda_emu.hpp) into module.so.
// Folder: <cache>/modules/<key>/; <cache>/images/<hash of an image> names the key of the module
// whose NVRTC compilation produced that image (PTX, CUBIN or the stand-in's own image).

struct ModuleSource
{
    std::string name, source;
    std::vector<std::pair<std::string, std::string>> headers;
    std::vector<std::string> options;
};

inline std::string emu_dir() { return LF_EMU_DIR; }

inline std::string module_key(const ModuleSource& m)
{
    Hasher h;
    h.field("layerfusion-emulated-module-v1");
    std::string text;
    for (const char* f : {"/cuda_emu.hpp", "/prior_ptx_emu.hpp"})
    {
        read_file(emu_dir() + f, text);
        h.field(text);
    }
    h.field(m.name);
    h.field(m.source);
    for (auto& [n, t] : m.headers) { h.field(n); h.field(t); }
    for (auto& o : m.options) h.field(o);
    return h.hex();
}

inline bool safe_name(const std::string& n)
{
    if (n.empty() || n[0] == '/' || n.find("..") != std::string::npos) return false;
    for (char c : n)
        if (!(isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.' || c == '/')) return false;
    return true;
}

struct KernelDecl
{
    std::string name, bounds;  // bounds: the __launch_bounds__ arguments as written, or empty
};

// The extern "C" kernels of the preprocessed source (after the marker), with their launch bounds.
inline std::vector<KernelDecl> scan_kernels(const std::string& pre)
{
    std::vector<KernelDecl> out;
    size_t pos = pre.find("LF_EMU_SOURCE_BEGIN");
    if (pos == std::string::npos) return out;
    auto ws = [&](size_t& i) { while (i < pre.size() && isspace((unsigned char)pre[i])) i++; };
    auto ident = [&](size_t& i) {
        size_t s = i;
        while (i < pre.size() && (isalnum((unsigned char)pre[i]) || pre[i] == '_')) i++;
        return pre.substr(s, i - s);
    };
    while ((pos = pre.find("extern \"C\"", pos)) != std::string::npos)
    {
        size_t i = pos + 10;
        pos = i;
        ws(i);
        if (ident(i) != "void") continue;
        ws(i);
        KernelDecl k;
        size_t save = i;
        if (ident(i) == "__lf_lb__")
        {
            ws(i);
            if (i >= pre.size() || pre[i] != '(') continue;
            int depth = 0;
            size_t s = i + 1;
            for (; i < pre.size(); i++)
            {
                if (pre[i] == '(') depth++;
                else if (pre[i] == ')' && --depth == 0) break;
            }
            k.bounds = pre.substr(s, i - s);
            i++;
            ws(i);
        }
        else i = save;
        k.name = ident(i);
        ws(i);
        if (!k.name.empty() && i < pre.size() && pre[i] == '(') out.push_back(k);
    }
    return out;
}

// Builds (or finds) the module; false with the reason in `log` when g++ rejects the source.
inline bool build_module(const ModuleSource& m, const std::string& key, std::string& log)
{
    std::string root = cache_dir() + "/modules";
    mkdirs(cache_dir());
    std::string dir = root + "/" + key;
    if (exists(dir + "/module.so")) return true;
    mkdirs(root);
    std::string tmp = dir + ".tmp." + std::to_string(getpid()) + "." + std::to_string((unsigned long)gettid());
    std::string rm;
    run({"rm", "-rf", tmp}, rm);
    mkdirs(tmp);
    std::string srcName = safe_name(m.name) ? m.name : "source.cu";
    for (auto& [n, t] : m.headers)
    {
        if (!safe_name(n)) { log += "emulator: header name '" + n + "' is not a plain relative path\n"; return false; }
        auto slash = n.rfind('/');
        if (slash != std::string::npos) mkdirs(tmp + "/" + n.substr(0, slash));
        write_file(tmp + "/" + n, t);
    }
    auto slash = srcName.rfind('/');
    if (slash != std::string::npos) mkdirs(tmp + "/" + srcName.substr(0, slash));
    write_file(tmp + "/" + srcName, m.source);

    std::vector<std::string> defs;
    for (size_t i = 0; i < m.options.size(); i++)
    {
        const auto& o = m.options[i];
        if (o.rfind("-D", 0) == 0 || o.rfind("-U", 0) == 0 || o.rfind("--define-macro=", 0) == 0)
            defs.push_back(o.rfind("--define-macro=", 0) == 0 ? "-D" + o.substr(15) : o);
        else if ((o == "-D" || o == "-U") && i + 1 < m.options.size())
            defs.push_back(o + m.options[++i]);
    }

    write_file(tmp + "/scan.cpp", "#define LF_EMU_SCAN 1\n#include \"prior_ptx_emu.hpp\"\n"
               "#define __launch_bounds__(...) __lf_lb__(__VA_ARGS__)\nLF_EMU_SOURCE_BEGIN\n#include \"" + srcName + "\"\n");
    std::vector<std::string> base = {"g++", "-std=c++20", "-I" + emu_dir(), "-I" + tmp};
    base.insert(base.end(), defs.begin(), defs.end());
    auto scan = base;
    scan.insert(scan.end(), {"-E", "-P", tmp + "/scan.cpp", "-o", tmp + "/scan.i"});
    std::string glog;
    if (run(scan, glog) != 0)
    {
        log += glog;
        return false;
    }
    std::string pre;
    read_file(tmp + "/scan.i", pre);
    unlink((tmp + "/scan.i").c_str());
    auto kernels = scan_kernels(pre);

    std::string mod = "#include \"prior_ptx_emu.hpp\"\n#include \"" + srcName + "\"\n"
        "#define LFEMU_X extern \"C\" __attribute__((visibility(\"default\")))\n"
        "LFEMU_X void lfemu_module_init(void (*hook)(const char*)) { lf_emu_fatal_hook = hook; }\n"
        "template <typename F> struct lfemu_sig;\n"
        "template <typename... P> struct lfemu_sig<void(P...)> : lf_emu_params_of<P...> {};\n"
        "struct lfemu_kernel { int max_threads, min_blocks, count; const int* sizes; const int* aligns;\n"
        "  void (*launch)(lf_emu_dim3, lf_emu_dim3, size_t, void**); };\n";
    for (auto& k : kernels)
    {
        std::string b = k.bounds, maxT = "1024", minB = "0";
        if (!b.empty())
        {
            // split at the top-level comma
            int depth = 0;
            size_t comma = std::string::npos;
            for (size_t i = 0; i < b.size(); i++)
            {
                if (b[i] == '(') depth++;
                else if (b[i] == ')') depth--;
                else if (b[i] == ',' && depth == 0) { comma = i; break; }
            }
            maxT = "(" + b.substr(0, comma) + ")";
            if (comma != std::string::npos) minB = "(" + b.substr(comma + 1) + ")";
        }
        const std::string& n = k.name;
        mod += "static void lfemu_launch_" + n + "(lf_emu_dim3 g, lf_emu_dim3 b, size_t s, void** p) { lf_emu_launch_params(" + n +
               ", g, b, s, p); }\n"
               "LFEMU_X const lfemu_kernel lfemu_kernel_" + n + " = { " + maxT + ", " + minB + ", lfemu_sig<decltype(" + n +
               ")>::count, lfemu_sig<decltype(" + n + ")>::sizes, lfemu_sig<decltype(" + n + ")>::aligns, lfemu_launch_" + n + " };\n";
    }
    write_file(tmp + "/module.cpp", mod);
    auto cc = base;
    cc.insert(cc.end(), {"-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-strict-aliasing", "-w",
                         tmp + "/module.cpp", "-o", tmp + "/module.so"});
    glog.clear();
    if (run(cc, glog) != 0)
    {
        log += glog;
        return false;
    }
    if (std::rename(tmp.c_str(), dir.c_str()) != 0 && !exists(dir + "/module.so"))
    {
        log += "emulator: cannot publish " + dir + "\n";
        return false;
    }
    run({"rm", "-rf", tmp}, rm);
    return true;
}

// The module's inputs, kept so the driver can build it when it is first loaded.
inline std::string serialize(const ModuleSource& m)
{
    std::string out;
    auto put = [&](const std::string& f) { out += std::to_string(f.size()) + ":" + f; };
    put(m.name);
    put(m.source);
    put(std::to_string(m.headers.size()));
    for (auto& [n, t] : m.headers) { put(n); put(t); }
    put(std::to_string(m.options.size()));
    for (auto& o : m.options) put(o);
    return out;
}

inline bool deserialize(const std::string& in, ModuleSource& m)
{
    size_t pos = 0;
    auto get = [&](std::string& f) {
        size_t colon = in.find(':', pos);
        if (colon == std::string::npos) return false;
        size_t n = std::strtoull(in.c_str() + pos, nullptr, 10);
        if (colon + 1 + n > in.size()) return false;
        f = in.substr(colon + 1, n);
        pos = colon + 1 + n;
        return true;
    };
    std::string count;
    if (!get(m.name) || !get(m.source) || !get(count)) return false;
    for (size_t i = 0, c = std::strtoull(count.c_str(), nullptr, 10); i < c; i++)
    {
        std::string n, t;
        if (!get(n) || !get(t)) return false;
        m.headers.emplace_back(n, t);
    }
    if (!get(count)) return false;
    for (size_t i = 0, c = std::strtoull(count.c_str(), nullptr, 10); i < c; i++)
    {
        std::string o;
        if (!get(o)) return false;
        m.options.push_back(o);
    }
    return true;
}

inline bool stage_module(const ModuleSource& m, const std::string& key)
{
    mkdirs(cache_dir() + "/modules");
    std::string path = cache_dir() + "/modules/" + key + ".source";
    return exists(path) || write_file(path, serialize(m));
}

// Loads (building first if needed) the module of `key`; the handle, or null with the reason in log.
inline bool ensure_built(const std::string& key, std::string& log)
{
    std::string dir = cache_dir() + "/modules/" + key;
    if (exists(dir + "/module.so")) return true;
    std::string text;
    ModuleSource m;
    if (!read_file(dir + ".source", text) || !deserialize(text, m))
    {
        log += "emulator: no record of the source of module " + key + "\n";
        return false;
    }
    return build_module(m, key, log);
}

inline void register_image(const void* image, size_t bytes, const std::string& key)
{
    std::string dir = cache_dir() + "/images";
    mkdirs(dir);
    write_file(dir + "/" + hash_bytes(image, bytes), key);
}

inline bool lookup_image(const void* image, size_t bytes, std::string& key)
{
    if (!read_file(cache_dir() + "/images/" + hash_bytes(image, bytes), key)) return false;
    while (!key.empty() && isspace((unsigned char)key.back())) key.pop_back();
    return !key.empty();
}

// The stand-in NVRTC's own image when no real NVRTC is present: a NUL-terminated text naming the key.
constexpr const char* own_image_magic = "// layerfusion emulated module ";
}  // namespace lfemu

// Offered by the stand-in driver to the stand-in cuBLAS/cuBLASLt (not part of the CUDA API).
extern "C"
{
typedef int (*lfemu_host_fn)(void* ctx);
int lfemu_enqueue_host(void* stream, lfemu_host_fn fn, void* ctx, void (*release)(void*));
int lfemu_check_range(unsigned long long ptr, size_t bytes, const char* what);
int lfemu_has_context(void);
int lfemu_stream_valid(void* stream);
void lfemu_log_line(const char* line);
}
