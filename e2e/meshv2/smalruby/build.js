// Builds the test fixture shaped like the published Smalruby editor (smalruby/smalruby.app):
// index.html, lib.min.js (page.js with ../replica.js and the npm aws-appsync client, bundled
// for the browser and minified by esbuild) and static/. The environment is defined empty, as
// the editor's webpack DefinePlugin does when no MESH_* variable is set, so the minifier folds
// `"" || "https://…"` into the one literal the published bundle holds.
//
//   node smalruby/build.js OUTDIR
'use strict';
const fs = require('fs');
const path = require('path');
const esbuild = require('esbuild');

const out = process.argv[2];
if (!out) {
    console.error('usage: node smalruby/build.js OUTDIR');
    process.exit(2);
}
// Node's built-in modules stand empty in the browser: aws-appsync's npm dependencies name
// some (AWS credential providers for IAM auth, Node's HTTP handler) that API-key auth in a
// browser never runs, as the editor's webpack build leaves them out with resolve.fallback.
const nodeBuiltinsEmpty = {
    name: 'node-builtins-empty',
    setup (build) {
        build.onResolve({filter: /^node:/}, args => ({path: args.path, namespace: 'empty'}));
        build.onLoad({filter: /.*/, namespace: 'empty'}, () => ({contents: 'module.exports = {};', loader: 'js'}));
    }
};

const main = async () => {
    fs.mkdirSync(path.join(out, 'static'), {recursive: true});
    await esbuild.build({
        entryPoints: [path.join(__dirname, 'page.js')],
        outfile: path.join(out, 'lib.min.js'),
        bundle: true,
        minify: true,
        platform: 'browser',
        format: 'iife',
        target: 'es2019',
        define: {
            'process.env.MESH_GRAPHQL_ENDPOINT': '""',
            'process.env.MESH_API_KEY': '""',
            'process.env.NODE_ENV': '"production"',
            'global': 'globalThis'
        },
        plugins: [nodeBuiltinsEmpty],
        // The editor's webpack provides process (ProvidePlugin 'process/browser'); so does this.
        banner: {js: 'var process=globalThis.process||{env:{},browser:true,nextTick:function(f){var a=[].slice.call(arguments,1);Promise.resolve().then(function(){f.apply(null,a)})}};'},
        logLevel: 'error'
    });
    fs.copyFileSync(path.join(__dirname, 'index.html'), path.join(out, 'index.html'));
    fs.copyFileSync(path.join(__dirname, 'favicon.svg'), path.join(out, 'static', 'favicon.svg'));
};

main().catch(error => {
    console.error(error.message);
    process.exit(1);
});
