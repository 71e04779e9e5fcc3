import asyncio, json, sys, os
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
NM="/tmp/mcpref/node_modules/@modelcontextprotocol"
servers=[
 ("npm:@modelcontextprotocol/server-everything", "node", [f"{NM}/server-everything/dist/index.js","stdio"]),
 ("npm:@modelcontextprotocol/server-filesystem", "node", [f"{NM}/server-filesystem/dist/index.js","/tmp"]),
 ("npm:@modelcontextprotocol/server-memory", "node", [f"{NM}/server-memory/dist/index.js"]),
 ("pypi:mcp-server-time", "/tmp/mcpref/venv/bin/mcp-server-time", []),
 ("pypi:mcp-server-fetch", "/tmp/mcpref/venv/bin/mcp-server-fetch", []),
 ("pypi:mcp-server-git", "/tmp/mcpref/venv/bin/mcp-server-git", []),
]
def ver(src):
    import subprocess
    if src.startswith("npm:"):
        p=json.load(open(f"/tmp/mcpref/node_modules/{src[4:]}/package.json")); return p["version"]
    out=subprocess.run(["/tmp/mcpref/venv/bin/pip","show",src[5:]],capture_output=True,text=True).stdout
    return [l.split(": ")[1] for l in out.splitlines() if l.startswith("Version")][0]
async def main():
    out=open(sys.argv[1],"w")
    for src,cmd,args in servers:
        params=StdioServerParameters(command=cmd,args=args,env={**os.environ,"MEMORY_FILE_PATH":"/tmp/mcpref/mem.json"})
        async with stdio_client(params) as (r,w):
            async with ClientSession(r,w) as s:
                await s.initialize()
                tools=await s.list_tools()
                v=ver(src)
                for t in tools.tools:
                    out.write(json.dumps({"source":f"{src}@{v}","tool":t.model_dump(by_alias=True,exclude_none=True)},ensure_ascii=False)+"\n")
                try:
                    pr=await s.list_prompts()
                    for p in pr.prompts:
                        out.write(json.dumps({"source":f"{src}@{v}","tool":p.model_dump(by_alias=True,exclude_none=True)},ensure_ascii=False)+"\n")
                except Exception: pass
                print(src, len(tools.tools))
asyncio.run(main())
