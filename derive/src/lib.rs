//! Derive macros for weir: `#[derive(HeapSize)]`.
//!
//! Use them through `weir_runtime` (or the `weir` facade's prelude), which re-exports each
//! macro beside the trait it implements; the generated impl names the trait as `HeapSize`, so
//! the trait must be in scope where the derive is used (importing the derive imports it too).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{parse_macro_input, parse_quote, Data, DeriveInput, Fields, GenericParam};

/// Derives `HeapSize` for a struct or an enum: the heap a value owns is the sum of what its
/// fields own (for an enum, the fields of the variant it holds), and the type can own heap
/// memory if any field's type can. Every type parameter gets a `HeapSize` bound.
///
/// A field that owns no memory the trait can see (a handle to shared state, say) can be left
/// out with `#[heap_size(skip)]`.
#[proc_macro_derive(HeapSize, attributes(heap_size))]
pub fn derive_heap_size(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn skipped(attrs: &[syn::Attribute]) -> syn::Result<bool> {
    let mut skip = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("heap_size")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("expected `skip`"))
            }
        })?;
    }
    Ok(skip)
}

/// The fields of one struct or variant that count: their types and how to bind them in a
/// pattern.
struct Counted {
    types: Vec<syn::Type>,
    names: Vec<syn::Ident>,
    pattern: TokenStream2,
}

fn counted(fields: &Fields) -> syn::Result<Counted> {
    let mut types = Vec::new();
    let mut names = Vec::new();
    let mut binds = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let name = format_ident!("__f{}", i);
        let skip = skipped(&field.attrs)?;
        let bind = match (&field.ident, skip) {
            (Some(ident), false) => quote!(#ident: #name),
            (Some(ident), true) => quote!(#ident: _),
            (None, false) => quote!(#name),
            (None, true) => quote!(_),
        };
        binds.push(bind);
        if !skip {
            types.push(field.ty.clone());
            names.push(name);
        }
    }
    let pattern = match fields {
        Fields::Named(_) => quote!({ #(#binds,)* .. }),
        Fields::Unnamed(_) => quote!(( #(#binds,)* )),
        Fields::Unit => quote!(),
    };
    Ok(Counted {
        types,
        names,
        pattern,
    })
}

fn expand(mut input: DeriveInput) -> syn::Result<TokenStream2> {
    for param in &mut input.generics.params {
        if let GenericParam::Type(t) = param {
            t.bounds.push(parse_quote!(HeapSize));
        }
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    let mut all_types = Vec::new();
    let body = match &input.data {
        Data::Struct(s) => {
            let c = counted(&s.fields)?;
            let (pattern, names) = (&c.pattern, &c.names);
            all_types.extend(c.types);
            quote! {
                let #name #pattern = self;
                0usize #(+ HeapSize::heap_size(#names))*
            }
        }
        Data::Enum(e) => {
            let mut arms = Vec::new();
            for v in &e.variants {
                let c = counted(&v.fields)?;
                let (ident, pattern, names) = (&v.ident, &c.pattern, &c.names);
                all_types.extend(c.types);
                arms.push(quote! {
                    #name::#ident #pattern => 0usize #(+ HeapSize::heap_size(#names))*,
                });
            }
            if arms.is_empty() {
                quote!(match *self {})
            } else {
                quote!(match self { #(#arms)* })
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(
                u.union_token,
                "HeapSize cannot be derived for a union: which field is live is not known",
            ))
        }
    };
    let has_heap = if all_types.is_empty() {
        quote!(false)
    } else {
        quote!(false #(|| <#all_types as HeapSize>::HAS_HEAP)*)
    };
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics HeapSize for #name #ty_generics #where_clause {
            const HAS_HEAP: bool = #has_heap;

            #[inline]
            #[allow(unused_variables)]
            fn heap_size(&self) -> usize {
                #body
            }
        }
    })
}
