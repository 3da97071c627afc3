// Stand-in for NVRTC (libnvrtc.so.12): the entry points src/LayerFusion.Cuda/Interop/Nvrtc.cs binds,
// with nvrtc.h's names, signatures and result codes. Every compilation is forwarded to a real NVRTC
// when one is installed (so every emulated run also compile-checks the kernels for real, and the
// images are the real PTX/CUBIN), and is also built by g++ against the kernel emulator into a module
// the stand-in driver loads; the image -> module record lives in the emulator cache (standin.hpp).
// Errors of either compiler come back through nvrtcGetProgramLog.
#include "standin.hpp"

#include <dlfcn.h>
#include <mutex>
#include <string>
#include <vector>

typedef int nvrtcResult;
enum : int
{
    NVRTC_SUCCESS = 0,
    NVRTC_ERROR_OUT_OF_MEMORY = 1,
    NVRTC_ERROR_PROGRAM_CREATION_FAILURE = 2,
    NVRTC_ERROR_INVALID_INPUT = 3,
    NVRTC_ERROR_INVALID_PROGRAM = 4,
    NVRTC_ERROR_INVALID_OPTION = 5,
    NVRTC_ERROR_COMPILATION = 6,
    NVRTC_ERROR_INTERNAL_ERROR = 11,
};

namespace
{
const char* kNames[] = {
    "NVRTC_SUCCESS", "NVRTC_ERROR_OUT_OF_MEMORY", "NVRTC_ERROR_PROGRAM_CREATION_FAILURE", "NVRTC_ERROR_INVALID_INPUT",
    "NVRTC_ERROR_INVALID_PROGRAM", "NVRTC_ERROR_INVALID_OPTION", "NVRTC_ERROR_COMPILATION", "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
    "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION", "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
    "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID", "NVRTC_ERROR_INTERNAL_ERROR",
};

struct Real
{
    void* dl = nullptr;
    nvrtcResult (*version)(int*, int*);
    const char* (*errorString)(nvrtcResult);
    nvrtcResult (*numArchs)(int*);
    nvrtcResult (*archs)(int*);
    nvrtcResult (*create)(void**, const char*, const char*, int, const char* const*, const char* const*);
    nvrtcResult (*destroy)(void**);
    nvrtcResult (*compile)(void*, int, const char* const*);
    nvrtcResult (*logSize)(void*, size_t*);
    nvrtcResult (*log)(void*, char*);
    nvrtcResult (*ptxSize)(void*, size_t*);
    nvrtcResult (*ptx)(void*, char*);
    nvrtcResult (*cubinSize)(void*, size_t*);
    nvrtcResult (*cubin)(void*, char*);
};

LFEMU_API nvrtcResult nvrtcVersion(int* major, int* minor);

// A real NVRTC, if installed: LAYERFUSION_EMU_REAL_NVRTC, else the sonames of CUDA 11.2+, 12, 13.
const Real* real()
{
    static Real r;
    static std::once_flag once;
    std::call_once(once, [] {
        std::vector<std::string> names;
        if (const char* e = std::getenv("LAYERFUSION_EMU_REAL_NVRTC"); e && *e) names.push_back(e);
        if (const char* e = std::getenv("LAYERFUSION_EMU_REAL_NVRTC"); e && std::string(e) == "none") names.clear();
        else for (const char* n : {"libnvrtc.so.11.2", "libnvrtc.so.12", "libnvrtc.so.13"}) names.push_back(n);
        for (auto& n : names)
        {
            void* dl = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (!dl) continue;
            auto v = (nvrtcResult(*)(int*, int*))dlsym(dl, "nvrtcVersion");
            if (!v || v == &nvrtcVersion) { dlclose(dl); continue; }  // ourselves
            r.dl = dl;
            break;
        }
        if (!r.dl) return;
#define LFEMU_SYM(field, name) r.field = (decltype(r.field))dlsym(r.dl, name)
        LFEMU_SYM(version, "nvrtcVersion");
        LFEMU_SYM(errorString, "nvrtcGetErrorString");
        LFEMU_SYM(numArchs, "nvrtcGetNumSupportedArchs");
        LFEMU_SYM(archs, "nvrtcGetSupportedArchs");
        LFEMU_SYM(create, "nvrtcCreateProgram");
        LFEMU_SYM(destroy, "nvrtcDestroyProgram");
        LFEMU_SYM(compile, "nvrtcCompileProgram");
        LFEMU_SYM(logSize, "nvrtcGetProgramLogSize");
        LFEMU_SYM(log, "nvrtcGetProgramLog");
        LFEMU_SYM(ptxSize, "nvrtcGetPTXSize");
        LFEMU_SYM(ptx, "nvrtcGetPTX");
        LFEMU_SYM(cubinSize, "nvrtcGetCUBINSize");
        LFEMU_SYM(cubin, "nvrtcGetCUBIN");
#undef LFEMU_SYM
    });
    return r.dl ? &r : nullptr;
}

struct Program
{
    void* real = nullptr;
    lfemu::ModuleSource src;
    std::string log, image;
    bool compiled = false;
};
std::mutex g_mu;

bool valid(void* p) { return p != nullptr; }
}  // namespace

LFEMU_API const char* nvrtcGetErrorString(nvrtcResult r)
{
    if (r >= 0 && r < (int)(sizeof kNames / sizeof kNames[0])) return kNames[r];
    return "NVRTC_ERROR unknown";
}

LFEMU_API nvrtcResult nvrtcVersion(int* major, int* minor)
{
    if (!major || !minor) return NVRTC_ERROR_INVALID_INPUT;
    if (auto* r = real()) return r->version(major, minor);
    *major = 12;
    *minor = 8;
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetNumSupportedArchs(int* n)
{
    if (!n) return NVRTC_ERROR_INVALID_INPUT;
    if (auto* r = real(); r && r->numArchs) return r->numArchs(n);
    *n = 6;
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetSupportedArchs(int* archs)
{
    if (!archs) return NVRTC_ERROR_INVALID_INPUT;
    if (auto* r = real(); r && r->archs) return r->archs(archs);
    const int own[] = {75, 80, 86, 87, 89, 90};
    std::memcpy(archs, own, sizeof own);
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcCreateProgram(void** prog, const char* src, const char* name, int numHeaders, const char* const* headers,
                                         const char* const* includeNames)
{
    if (!prog || !src || numHeaders < 0 || (numHeaders > 0 && (!headers || !includeNames))) return NVRTC_ERROR_INVALID_INPUT;
    auto* p = new Program;
    p->src.name = name ? name : "default_program";
    p->src.source = src;
    for (int i = 0; i < numHeaders; i++)
    {
        if (!headers[i] || !includeNames[i]) { delete p; return NVRTC_ERROR_INVALID_INPUT; }
        p->src.headers.emplace_back(includeNames[i], headers[i]);
    }
    if (auto* r = real())
        if (nvrtcResult rc = r->create(&p->real, src, name, numHeaders, headers, includeNames); rc != NVRTC_SUCCESS)
        {
            delete p;
            return rc;
        }
    *prog = p;
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcDestroyProgram(void** prog)
{
    if (!prog || !valid(*prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    auto* p = (Program*)*prog;
    if (p->real) real()->destroy(&p->real);
    delete p;
    *prog = nullptr;
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcCompileProgram(void* prog, int numOptions, const char* const* options)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (numOptions < 0 || (numOptions > 0 && !options)) return NVRTC_ERROR_INVALID_INPUT;
    auto* p = (Program*)prog;
    p->src.options.clear();
    for (int i = 0; i < numOptions; i++)
    {
        if (!options[i]) return NVRTC_ERROR_INVALID_INPUT;
        p->src.options.push_back(options[i]);
    }
    p->log.clear();
    const Real* r = real();
    if (r)
    {
        nvrtcResult rc = r->compile(p->real, numOptions, options);
        size_t n = 0;
        if (r->logSize(p->real, &n) == NVRTC_SUCCESS && n > 1)
        {
            std::string log(n, '\0');
            r->log(p->real, log.data());
            log.resize(std::strlen(log.c_str()));
            p->log = log;
        }
        if (rc != NVRTC_SUCCESS) return rc;
    }
    else
    {
        bool arch = false;
        for (auto& o : p->src.options)
            if (o.rfind("-arch", 0) == 0 || o.rfind("--gpu-architecture", 0) == 0) arch = true;
            else if (o.rfind("-D", 0) != 0 && o.rfind("-U", 0) != 0 && o.rfind("-I", 0) != 0 && o.rfind("--std=", 0) != 0 &&
                     o.rfind("-std=", 0) != 0 && o != "-lineinfo" && o != "--use_fast_math" && o.rfind("-default-device", 0) != 0)
            {
                p->log = "nvrtc stand-in: unrecognized option " + o + "\n";
                return NVRTC_ERROR_INVALID_OPTION;
            }
        (void)arch;
    }
    std::string key = lfemu::module_key(p->src), glog;
    bool built;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        built = lfemu::build_module(p->src, key, glog);
    }
    if (!built)
    {
        p->log += (p->log.empty() ? "" : "\n") + std::string("emulator: g++ rejected this source for the emulated device:\n") + glog;
        return NVRTC_ERROR_COMPILATION;
    }
    p->image = std::string(lfemu::own_image_magic) + key + "\n";
    p->image.push_back('\0');
    lfemu::register_image(p->image.data(), p->image.size(), key);
    if (r)
    {
        size_t n = 0;
        if (r->ptxSize(p->real, &n) == NVRTC_SUCCESS && n > 0)
        {
            std::string ptx(n, '\0');
            if (r->ptx(p->real, ptx.data()) == NVRTC_SUCCESS) lfemu::register_image(ptx.data(), std::strlen(ptx.c_str()) + 1, key);
        }
        n = 0;
        if (r->cubinSize && r->cubinSize(p->real, &n) == NVRTC_SUCCESS && n > 0)
        {
            std::string cubin(n, '\0');
            if (r->cubin(p->real, cubin.data()) == NVRTC_SUCCESS) lfemu::register_image(cubin.data(), n, key);
        }
    }
    p->compiled = true;
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetProgramLogSize(void* prog, size_t* n)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!n) return NVRTC_ERROR_INVALID_INPUT;
    *n = ((Program*)prog)->log.size() + 1;
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetProgramLog(void* prog, char* log)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!log) return NVRTC_ERROR_INVALID_INPUT;
    auto& s = ((Program*)prog)->log;
    std::memcpy(log, s.c_str(), s.size() + 1);
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetPTXSize(void* prog, size_t* n)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!n) return NVRTC_ERROR_INVALID_INPUT;
    auto* p = (Program*)prog;
    if (!p->compiled) return NVRTC_ERROR_INVALID_PROGRAM;
    if (p->real) return real()->ptxSize(p->real, n);
    *n = p->image.size();
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetPTX(void* prog, char* out)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!out) return NVRTC_ERROR_INVALID_INPUT;
    auto* p = (Program*)prog;
    if (!p->compiled) return NVRTC_ERROR_INVALID_PROGRAM;
    if (p->real) return real()->ptx(p->real, out);
    std::memcpy(out, p->image.data(), p->image.size());
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetCUBINSize(void* prog, size_t* n)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!n) return NVRTC_ERROR_INVALID_INPUT;
    auto* p = (Program*)prog;
    if (!p->compiled) return NVRTC_ERROR_INVALID_PROGRAM;
    if (p->real) return real()->cubinSize(p->real, n);
    *n = p->image.size();
    return NVRTC_SUCCESS;
}

LFEMU_API nvrtcResult nvrtcGetCUBIN(void* prog, char* out)
{
    if (!valid(prog)) return NVRTC_ERROR_INVALID_PROGRAM;
    if (!out) return NVRTC_ERROR_INVALID_INPUT;
    auto* p = (Program*)prog;
    if (!p->compiled) return NVRTC_ERROR_INVALID_PROGRAM;
    if (p->real) return real()->cubin(p->real, out);
    std::memcpy(out, p->image.data(), p->image.size());
    return NVRTC_SUCCESS;
}
